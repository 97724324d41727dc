"""The SIP answering machine, blocking or asyncio (``voicemail.SipEndpoint``)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType
from typing import AsyncIterator, Callable, Optional, Tuple, Type

from voicemail import _voicemail
from voicemail._voicemail import Config, Message

__all__ = ["SipEndpoint"]


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """Schedules ``callback`` on ``loop`` from another thread (a closed loop is ignored)."""
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:
        pass  # the loop is closed: nobody is listening any more


class _Dispatcher:
    """Receives each message on the endpoint's worker thread; forwards it to the asyncio
    queue of ``messages()`` (if started with ``start()``) and to the user's callback.

    It holds no reference to the ``SipEndpoint``, so no reference cycle keeps an endpoint
    (and its threads) alive.
    """

    def __init__(self, on_message: Optional[Callable[[Message], object]]) -> None:
        self._on_message = on_message
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._queue: Optional[asyncio.Queue[Optional[Message]]] = None

    def attach(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Optional[Message]]) -> None:
        with self._lock:
            self._loop, self._queue = loop, queue

    def __call__(self, message: Message) -> None:
        with self._lock:
            loop, queue = self._loop, self._queue
        if loop is not None and queue is not None:
            _post(loop, lambda: queue.put_nowait(message))
        if self._on_message is not None:
            self._on_message(message)

    def close(self) -> None:
        """The endpoint stopped: ends ``messages()``."""
        with self._lock:
            loop, queue = self._loop, self._queue
        if loop is not None and queue is not None:
            _post(loop, lambda: queue.put_nowait(None))


class SipEndpoint:
    """The SIP answering machine of a mailbox: answers every call, plays the greeting the
    calendar picks and a beep, records the caller into the spool and hands over each message.

    ``SipEndpoint(config, *, on_message=None, deliver=True, listen=None)``

    - ``config``: a :class:`voicemail.Config`; its ``[sip]`` table sets the listen address,
      RTP ports, call limit, allow-list and registrations.
    - ``on_message(message)``: called for every recorded :class:`voicemail.Message`, from a
      worker thread, once the message is in the spool (and queued for delivery).
    - ``deliver``: queue every message for the configured delivery targets (Maildir, SMTP,
      IMAP) and retry failed deliveries while running, like the Rust answering machine.
    - ``listen``: ``"IP:PORT"`` overriding ``[sip] listen`` (port 0 picks a free port; see
      :attr:`local_addr`).

    The SIP sockets are bound at construction. Blocking use::

        endpoint = voicemail.SipEndpoint(config, on_message=print)
        endpoint.run()          # until Ctrl-C (re-raised after a clean stop) or shutdown()

    asyncio use::

        async with voicemail.SipEndpoint(config) as endpoint:
            async for message in endpoint.messages():
                print(message.to_json())

    Stopping (``shutdown()``, ``await stop()``, leaving ``async with``, Ctrl-C) refuses new
    calls, hangs up the calls in progress (their messages are finished and handed over),
    then stops.
    """

    __module__ = "voicemail"

    def __init__(
        self,
        config: Config,
        *,
        on_message: Optional[Callable[[Message], object]] = None,
        deliver: bool = True,
        listen: Optional[str] = None,
    ) -> None:
        if on_message is not None and not callable(on_message):
            raise TypeError("on_message must be callable")
        self._dispatcher = _Dispatcher(on_message)
        self._native = _voicemail.SipEndpoint(config, on_message=self._dispatcher, deliver=deliver, listen=listen)
        self._done: Optional[asyncio.Future[None]] = None
        self._queue: Optional[asyncio.Queue[Optional[Message]]] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def local_addr(self) -> Tuple[str, int]:
        """The address SIP listens on (UDP and TCP): ``(host, port)``."""
        return self._native.local_addr

    @property
    def spool(self) -> Path:
        """The spool directory messages are written to."""
        return self._native.spool

    @property
    def active_calls(self) -> int:
        """Calls in progress."""
        return self._native.active_calls

    @property
    def running(self) -> bool:
        """Whether the endpoint is serving."""
        return self._native.running

    def run(self) -> None:
        """Serves SIP in this thread until :meth:`shutdown` or Ctrl-C, then lets the calls in
        progress finish and returns. After Ctrl-C, ``KeyboardInterrupt`` is re-raised once the
        endpoint has stopped cleanly; a second Ctrl-C stops at once. An endpoint runs once."""
        try:
            self._native.run()
        finally:
            self._dispatcher.close()

    def shutdown(self) -> None:
        """Asks the endpoint to stop (thread-safe; returns at once)."""
        self._native.shutdown()

    async def start(self) -> None:
        """Starts serving in a background thread; returns once it runs. Messages then arrive
        at :meth:`messages` (and ``on_message``)."""
        if self._done is not None:
            raise RuntimeError("the endpoint was already started")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Optional[Message]] = asyncio.Queue()
        done: asyncio.Future[None] = loop.create_future()
        self._queue, self._done = queue, done
        self._dispatcher.attach(loop, queue)
        native, dispatcher = self._native, self._dispatcher

        def settle(error: Optional[BaseException]) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)

        def serve() -> None:
            error: Optional[BaseException] = None
            try:
                native.run()
            except BaseException as e:  # handed to the awaiting coroutine
                error = e
            finally:
                dispatcher.close()
                _post(loop, lambda: settle(error))

        self._thread = threading.Thread(target=serve, name="voicemail-sip-endpoint", daemon=True)
        self._thread.start()
        while not native.running and not done.done():
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        """Stops the endpoint (calls in progress finish their messages) and waits until it
        has stopped."""
        self._native.shutdown()
        await self.wait()

    async def wait(self) -> None:
        """Waits until the endpoint stops (raises what ``run()`` raised)."""
        if self._done is None:
            raise RuntimeError("the endpoint was not started with start()")
        await asyncio.shield(self._done)

    async def messages(self) -> AsyncIterator[Message]:
        """Every recorded message since :meth:`start`, as it arrives; ends when the endpoint
        has stopped and every message was handed over."""
        queue = self._queue
        if queue is None:
            raise RuntimeError("start the endpoint first (await endpoint.start() or async with)")
        while True:
            message = await queue.get()
            if message is None:
                queue.put_nowait(None)  # later iterations end too
                return
            yield message

    async def __aenter__(self) -> SipEndpoint:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return repr(self._native).replace("SipEndpoint(", "voicemail.SipEndpoint(", 1)
