"""The SIP answering machine, blocking or asyncio (``voicemail.SipEndpoint``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, AsyncIterator, Callable, Dict, Optional, Tuple, Type, Union

from voicemail import _voicemail
from voicemail._voicemail import Accept, Config, IncomingCall, Mailbox, Message, Reject

#: What ``on_call`` may return (or a coroutine ``on_call`` may return when awaited).
CallDecision = Union[Accept, Reject, None]

__all__ = ["SipEndpoint"]


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """Schedules ``callback`` on ``loop`` from another thread (a closed loop is ignored)."""
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:
        pass  # the loop is closed: nobody is listening any more


def _stop_on_sigterm(native: _voicemail.SipEndpoint) -> Callable[[], None]:
    """In the main thread, makes SIGTERM call ``native.shutdown()`` (a graceful stop, like
    Ctrl-C) and returns the function that restores the previous handler. Elsewhere (Python
    runs signal handlers in the main thread only) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
        native.shutdown()

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        # Only our own handler is replaced: one installed meanwhile stays.
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

    return restore


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

    @property
    def loop(self) -> Optional[asyncio.AbstractEventLoop]:
        """The event loop of ``start()``, if the endpoint was started with it."""
        with self._lock:
            return self._loop


class _Hooks:
    """The per-call callbacks as the native endpoint calls them (on its own threads): plain
    functions run there; a coroutine they return runs on the loop of ``start()`` (or, for an
    endpoint that serves with ``run()``, on a loop of its own in that thread)."""

    def __init__(self, dispatcher: _Dispatcher, decision_timeout: float) -> None:
        self._dispatcher = dispatcher
        self._timeout = decision_timeout

    def _run(self, result: Any, wait: bool) -> Any:
        if not inspect.isawaitable(result):
            return result
        loop = self._dispatcher.loop
        if loop is None or loop.is_closed():

            async def wrapped() -> Any:
                return await result

            return asyncio.run(wrapped())
        if not wait:
            # A notice: nobody waits for it; a failure goes to the loop's exception handler.
            asyncio.run_coroutine_threadsafe(_reported(result), loop)
            return None
        future = asyncio.run_coroutine_threadsafe(_awaited(result), loop)
        try:
            # A little longer than the endpoint waits: by then the answer no longer matters.
            return future.result(timeout=self._timeout + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def call(self, on_call: Callable[[IncomingCall], Any]) -> Callable[[IncomingCall], CallDecision]:
        def decide(call: IncomingCall) -> CallDecision:
            decision: CallDecision = self._run(on_call(call), wait=True)
            return decision

        return decide

    def notice(self, callback: Callable[[str, str], Any]) -> Callable[[str, str], None]:
        def notify(call_id: str, value: str) -> None:
            self._run(callback(call_id, value), wait=False)

        return notify


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


async def _reported(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception as e:  # reported like any failed callback of the loop
        asyncio.get_running_loop().call_exception_handler({"message": "a voicemail call hook failed", "exception": e})


class SipEndpoint:
    """The SIP answering machine of a mailbox: answers every call, plays the greeting the
    calendar picks and a beep, records the caller into the mailbox and hands over each
    message.

    ``SipEndpoint(config, *, on_message=None, deliver=True, listen=None)``

    - ``config``: a :class:`voicemail.Config`. The endpoint opens its :class:`voicemail.Mailbox`
      (:attr:`mailbox`), which starts every call and stores every message; the ``[sip]``
      table sets the listen address, RTP ports, call limit, allow-list and registrations. A
      configuration with several mailboxes (``[[mailboxes]]``) opens them all
      (:attr:`mailboxes`): each call goes to the mailbox its diverting number (History-Info,
      Diversion), Request-URI or To user selects, else to the default one (else 404); every
      mailbox's messages reach ``on_message`` and ``messages()`` (``message.mailbox`` says
      which).
    - ``on_message(message)``: called for every :class:`voicemail.Message` as soon as the
      mailbox has stored it durably (finished calls, and calls a crashed process left, which
      the endpoint recovers as ``interrupted``), before any delivery is attempted, until the
      endpoint has stopped. It runs on
      a worker thread; an exception it raises goes to ``sys.unraisablehook``.
    - ``deliver``: while running, the endpoint runs the mailbox's background work, like the
      Rust answering machine: every message is delivered to the configured targets (Maildir,
      SMTP, IMAP) with retries, and calls a crashed process left are recovered (at start,
      then every few seconds). ``deliver=False`` runs without it: this process neither
      delivers nor recovers; deliveries for the configured targets are still queued (run
      them with ``mailbox.deliver()``/``mailbox.recover()``, or from another process).
    - ``listen``: ``"IP:PORT"`` overriding ``[sip] listen`` (port 0 picks a free port; see
      :attr:`local_addr`).
    - ``on_call(call)``: decides each incoming call (an :class:`voicemail.IncomingCall`: its
      ``call_id``, ``caller``, ``called``, the ``mailbox`` the endpoint chose, ...) after the
      endpoint's own checks: return :class:`voicemail.Accept` (optionally with another
      configured ``mailbox`` and/or ``greeting``), :class:`voicemail.Reject` (a final status
      from 400 to 699: ``Reject(486)`` is Busy Here; the call leaves no message) or ``None``
      (accept as usual). A decision that does not come within ``decision_timeout`` seconds
      (default 3), an exception or a wrong return type (both go to ``sys.unraisablehook``)
      leaves the call to the default behaviour, logged.
    - ``on_dtmf(call_id, digit)`` and ``on_state(call_id, state)``: each key the caller
      presses, and each state the call enters (``"answered"``, ``"greeting"``, ``"beep"``,
      ``"recording"``, ``"ended"``), in order, named by the SIP ``Call-ID`` that ``on_call``
      saw. They are notices: queued (1024 at most; more are dropped and counted in
      :attr:`dropped_notices`) and called on a thread of their own, so a slow callback never
      holds the media back.

    Each hook may be a plain function (called on a worker thread, with the GIL only for the
    call) or a coroutine function: its coroutine runs on the event loop of :meth:`start`
    (``async with``), or on a loop of its own in the worker thread under :meth:`run`.

    The SIP sockets are bound at construction. Blocking use::

        endpoint = voicemail.SipEndpoint(config, on_message=print)
        endpoint.run()          # until Ctrl-C (re-raised after a clean stop), SIGTERM or shutdown()

    asyncio use::

        async with voicemail.SipEndpoint(config) as endpoint:
            async for message in endpoint.messages():
                print(message.to_json())

    Stopping (``shutdown()``, ``await stop()``, leaving ``async with``, Ctrl-C, SIGTERM)
    refuses new calls, hangs up the calls in progress (their messages are finished, stored
    and handed over), gives due deliveries a last short pass, then stops.

    SIGTERM: while :meth:`run` runs in the main thread, and while an endpoint started with
    :meth:`start` from the main thread runs, a SIGTERM handler calls :meth:`shutdown`; the
    previous handler is restored when the endpoint stops. After SIGTERM, :meth:`run` returns
    normally (and ``messages()`` ends), so a service manager's stop is a clean exit. Calls in
    progress are hung up (end reason ``hang-up``), never left ``interrupted``. Only SIGKILL (or
    a second Ctrl-C) stops at once; the next endpoint on the same spool then recovers the
    calls in progress as ``interrupted`` messages.
    """

    __module__ = "voicemail"

    def __init__(
        self,
        config: Config,
        *,
        on_message: Optional[Callable[[Message], object]] = None,
        deliver: bool = True,
        listen: Optional[str] = None,
        on_call: Optional[Callable[[IncomingCall], Any]] = None,
        on_dtmf: Optional[Callable[[str, str], Any]] = None,
        on_state: Optional[Callable[[str, str], Any]] = None,
        decision_timeout: float = 3.0,
    ) -> None:
        for name, callback in (
            ("on_message", on_message),
            ("on_call", on_call),
            ("on_dtmf", on_dtmf),
            ("on_state", on_state),
        ):
            if callback is not None and not callable(callback):
                raise TypeError(f"{name} must be callable")
        self._dispatcher = _Dispatcher(on_message)
        hooks = _Hooks(self._dispatcher, decision_timeout)
        self._native = _voicemail.SipEndpoint(
            config,
            on_message=self._dispatcher,
            deliver=deliver,
            listen=listen,
            on_call=None if on_call is None else hooks.call(on_call),
            on_dtmf=None if on_dtmf is None else hooks.notice(on_dtmf),
            on_state=None if on_state is None else hooks.notice(on_state),
            decision_timeout=decision_timeout,
        )
        self._done: Optional[asyncio.Future[None]] = None
        self._queue: Optional[asyncio.Queue[Optional[Message]]] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def local_addr(self) -> Tuple[str, int]:
        """The address SIP listens on (UDP and TCP): ``(host, port)``."""
        return self._native.local_addr

    @property
    def spool(self) -> Path:
        """The spool directory of the endpoint's mailbox."""
        return self._native.spool

    @property
    def mailbox(self) -> Mailbox:
        """The endpoint's :class:`voicemail.Mailbox` (list, follow-up, deliveries); of a
        configuration with several mailboxes, the default one, else the first."""
        return self._native.mailbox

    @property
    def mailboxes(self) -> Dict[str, Mailbox]:
        """Every mailbox the endpoint serves, by name (one for a one-mailbox configuration)."""
        return self._native.mailboxes

    @property
    def active_calls(self) -> int:
        """Calls in progress."""
        return self._native.active_calls

    @property
    def dropped_notices(self) -> int:
        """Notices (``on_dtmf``, ``on_state``) dropped because the callbacks were too slow."""
        return self._native.dropped_notices

    @property
    def running(self) -> bool:
        """Whether the endpoint is serving."""
        return self._native.running

    def run(self) -> None:
        """Serves SIP in this thread until :meth:`shutdown`, SIGTERM or Ctrl-C, then lets the
        calls in progress finish their messages and returns. After SIGTERM it returns
        normally (in the main thread, a SIGTERM handler is installed for the duration of the
        call and the previous one restored afterwards). After Ctrl-C, ``KeyboardInterrupt``
        is re-raised once the endpoint has stopped cleanly; a second Ctrl-C stops at once. An
        endpoint runs once."""
        restore = _stop_on_sigterm(self._native)
        try:
            self._native.run()
        finally:
            restore()
            self._dispatcher.close()

    def shutdown(self) -> None:
        """Asks the endpoint to stop (thread-safe; returns at once)."""
        self._native.shutdown()

    async def start(self) -> None:
        """Starts serving in a background thread; returns once it runs. Messages then arrive
        at :meth:`messages` (and ``on_message``). Called from the main thread, it also makes
        SIGTERM stop the endpoint gracefully until it has stopped."""
        if self._done is not None:
            raise RuntimeError("the endpoint was already started")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Optional[Message]] = asyncio.Queue()
        done: asyncio.Future[None] = loop.create_future()
        self._queue, self._done = queue, done
        self._dispatcher.attach(loop, queue)
        native, dispatcher = self._native, self._dispatcher
        restore = _stop_on_sigterm(native)

        def settle(error: Optional[BaseException]) -> None:
            restore()  # on the loop's thread: the main thread when the handler was installed
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
