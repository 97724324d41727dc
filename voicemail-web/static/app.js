// The callback queue's little script: plain JavaScript, no build step. The pages work without
// it; it asks before a deletion and keeps one recording playing at a time.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// Starting one recording pauses the others.
document.addEventListener(
  "play",
  (event) => {
    for (const audio of document.querySelectorAll("audio")) {
      if (audio !== event.target && !audio.paused) {
        audio.pause();
      }
    }
  },
  true,
);

// The length the player reports, next to the length the mailbox measured.
document.addEventListener(
  "loadedmetadata",
  (event) => {
    const audio = event.target;
    if (audio instanceof HTMLAudioElement && Number.isFinite(audio.duration)) {
      audio.title = `${audio.duration.toFixed(1)} s`;
    }
  },
  true,
);
