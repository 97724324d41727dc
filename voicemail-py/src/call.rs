//! `voicemail.Call` (the sans-IO engine, started by `Mailbox.start_call`), its outputs,
//! `voicemail.Prompt` and the codecs.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use voicemail_core::call::resample::Resampler;
use voicemail_core::codec::{Codec, Decoder, Encoder};
use voicemail_core::{
    Call, CallLease, CodecChange, CodecKind, DtmfDigit, Event, Input, Mailbox, MessageMeta, Output, Prompt,
};

use crate::errors::BindingError;
use crate::message::{PyMediaStats, PyMessage};
use crate::time::Clock;

/// Parses a codec name (`pcmu`, `pcma`, `l16`, `g722`, `opus`; also `ulaw`, `alaw`).
pub(crate) fn parse_codec(name: &str) -> PyResult<CodecKind> {
    name.parse::<CodecKind>().map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Little-endian 16-bit PCM bytes as samples.
fn pcm_from_bytes(pcm: &[u8]) -> PyResult<Vec<i16>> {
    if !pcm.len().is_multiple_of(2) {
        return Err(PyValueError::new_err("16-bit PCM needs an even number of bytes"));
    }
    Ok(pcm.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect())
}

/// Samples as little-endian 16-bit PCM bytes (the layout of a WAV file's data chunk).
fn pcm_to_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// A duration in seconds from Python (finite, not negative).
fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| PyValueError::new_err(format!("{name} must be a finite, non-negative number of seconds")))
}

/// Encodes 16-bit little-endian PCM with ``codec`` (``"pcmu"``, ``"pcma"`` or ``"l16"`` at
/// 8 kHz, ``"g722"`` at 16 kHz, ``"opus"``: one 2.5 to 60 ms frame at 48 kHz), exactly as the
/// engine encodes greetings.
#[pyfunction]
#[pyo3(signature = (codec, pcm, /))]
pub(crate) fn encode_audio<'py>(py: Python<'py>, codec: &str, pcm: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let codec = parse_codec(codec)?;
    let samples = pcm_from_bytes(pcm)?;
    let mut out = Vec::with_capacity(samples.len() * codec.bytes_per_sample());
    codec.encode(&samples, &mut out);
    Ok(PyBytes::new(py, &out))
}

/// Decodes an RTP payload of ``codec`` into 16-bit little-endian PCM, exactly as the engine
/// decodes what it records (the bytes of the WAV's data chunk).
#[pyfunction]
#[pyo3(signature = (codec, payload, /))]
pub(crate) fn decode_audio<'py>(py: Python<'py>, codec: &str, payload: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let codec = parse_codec(codec)?;
    let mut samples = Vec::with_capacity(payload.len());
    codec.decode(payload, &mut samples);
    Ok(PyBytes::new(py, &pcm_to_bytes(&samples)))
}

/// A prompt (greeting or beep): 8 kHz mono audio, pre-encoded for every codec and shared
/// between calls without copying.
///
/// Build one with ``Prompt.load(path)`` (WAV, MP3, FLAC, Ogg/Vorbis at any rate),
/// ``Prompt.from_bytes(name, data)``, ``Prompt.from_pcm(name, pcm)``, ``Prompt.default()``
/// (the bundled greeting) or ``Prompt.beep()``.
#[pyclass(frozen, module = "voicemail", name = "Prompt")]
#[derive(Debug, Clone)]
pub struct PyPrompt {
    pub(crate) prompt: Prompt,
}

#[pymethods]
impl PyPrompt {
    /// Loads and decodes an audio file (resampled to 8 kHz mono); the name is the file stem.
    /// Raises ``FileNotFoundError`` (or another ``OSError``) if it cannot be read and
    /// ``GreetingError`` if it does not decode.
    #[staticmethod]
    #[pyo3(signature = (path, /))]
    fn load(py: Python<'_>, path: PathBuf) -> Result<Self, BindingError> {
        let prompt = py.detach(|| Prompt::load(&path))?;
        Ok(Self { prompt })
    }

    /// Decodes audio file contents held in memory (``format`` like ``"mp3"`` helps probing).
    #[staticmethod]
    #[pyo3(signature = (name, data, /, format = None))]
    fn from_bytes(py: Python<'_>, name: &str, data: &[u8], format: Option<&str>) -> Result<Self, BindingError> {
        let prompt = py.detach(|| Prompt::from_encoded_bytes(name, data.to_vec(), format))?;
        Ok(Self { prompt })
    }

    /// A prompt from 16-bit little-endian PCM bytes, 8 kHz mono (not empty).
    #[staticmethod]
    #[pyo3(signature = (name, pcm, /))]
    fn from_pcm(name: &str, pcm: &[u8]) -> PyResult<Self> {
        let samples = pcm_from_bytes(pcm)?;
        let prompt = Prompt::from_pcm(name, samples).map_err(BindingError::from)?;
        Ok(Self { prompt })
    }

    /// The greeting bundled with the library (English speech, about 4.7 s), named
    /// ``"default-greeting"``.
    #[staticmethod]
    fn default(py: Python<'_>) -> Self {
        Self { prompt: py.detach(Prompt::default_greeting) }
    }

    /// A beep: a sine tone at -6 dBFS with 5 ms fades, named ``"beep"``. The frequency must
    /// be below 4000 Hz; the length (seconds) at least one sample and at most ten minutes.
    #[staticmethod]
    #[pyo3(signature = (frequency_hz = 1000.0, length = 0.25))]
    fn beep(frequency_hz: f32, length: f64) -> PyResult<Self> {
        let prompt = Prompt::beep(frequency_hz, seconds("length", length)?).map_err(BindingError::from)?;
        Ok(Self { prompt })
    }

    /// The same audio under another name (messages record the greeting's name).
    #[pyo3(signature = (name, /))]
    fn renamed(&self, name: &str) -> Self {
        Self { prompt: self.prompt.renamed(name) }
    }

    /// The prompt's name.
    #[getter]
    fn name(&self) -> &str {
        self.prompt.name()
    }

    /// The number of 8 kHz samples.
    #[getter]
    fn samples(&self) -> usize {
        self.prompt.samples()
    }

    /// The length in seconds.
    #[getter]
    fn duration(&self) -> f64 {
        self.prompt.duration().as_secs_f64()
    }

    /// The audio as 16-bit little-endian PCM bytes, 8 kHz mono.
    fn pcm<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &pcm_to_bytes(self.prompt.pcm()))
    }

    /// The whole prompt encoded with ``codec``: the concatenated payloads of the RTP packets
    /// a call sends while playing it.
    #[pyo3(signature = (codec, /))]
    fn encoded<'py>(&self, py: Python<'py>, codec: &str) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, self.prompt.encoded(parse_codec(codec)?)))
    }

    fn __repr__(&self) -> String {
        format!("Prompt(name={:?}, duration={:.3})", self.prompt.name(), self.prompt.duration().as_secs_f64())
    }
}

/// Send this RTP packet (12-byte header + payload) to the caller now.
#[pyclass(frozen, eq, module = "voicemail", name = "SendRtp")]
#[derive(Debug, Clone, PartialEq)]
pub struct PySendRtp {
    packet: Vec<u8>,
}

#[pymethods]
impl PySendRtp {
    #[classattr]
    fn __match_args__() -> (&'static str,) {
        ("data",)
    }

    #[new]
    #[pyo3(signature = (data))]
    fn new(data: &[u8]) -> Self {
        Self { packet: data.to_vec() }
    }

    /// The whole datagram: RTP header and payload.
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.packet)
    }

    /// The payload (the datagram without its 12-byte header).
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.packet.get(12..).unwrap_or_default())
    }

    /// The RTP sequence number.
    #[getter]
    fn sequence(&self) -> u16 {
        u16::from_be_bytes([self.byte(2), self.byte(3)])
    }

    /// The RTP timestamp (8 kHz media clock).
    #[getter]
    fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.byte(4), self.byte(5), self.byte(6), self.byte(7)])
    }

    /// The RTP SSRC.
    #[getter]
    fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.byte(8), self.byte(9), self.byte(10), self.byte(11)])
    }

    /// The RTP payload type.
    #[getter]
    fn payload_type(&self) -> u8 {
        self.byte(1) & 0x7f
    }

    /// The RTP marker bit (set on the first packet of a talkspurt).
    #[getter]
    fn marker(&self) -> bool {
        self.byte(1) & 0x80 != 0
    }

    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        self.data(py)
    }

    fn __len__(&self) -> usize {
        self.packet.len()
    }

    fn __repr__(&self) -> String {
        format!("SendRtp(<{} bytes, seq={}, ts={}>)", self.packet.len(), self.sequence(), self.timestamp())
    }
}

impl PySendRtp {
    fn byte(&self, i: usize) -> u8 {
        self.packet.get(i).copied().unwrap_or(0)
    }
}

/// Play this audio to the caller now: a greeting or beep packet as 16-bit little-endian mono
/// PCM at the rate ``Call.drain_pcm(rate)`` asked for (its output instead of ``SendRtp``).
#[pyclass(frozen, eq, module = "voicemail", name = "SendPcm")]
#[derive(Debug, Clone, PartialEq)]
pub struct PySendPcm {
    pcm: Vec<u8>,
    /// The sample rate of ``pcm``, in Hz.
    #[pyo3(get)]
    rate: u32,
}

#[pymethods]
impl PySendPcm {
    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("pcm", "rate")
    }

    #[new]
    #[pyo3(signature = (pcm, rate))]
    fn new(pcm: &[u8], rate: u32) -> Self {
        Self { pcm: pcm.to_vec(), rate }
    }

    /// The audio: 16-bit little-endian mono samples.
    #[getter]
    fn pcm<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.pcm)
    }

    /// The number of samples.
    #[getter]
    fn samples(&self) -> usize {
        self.pcm.len() / 2
    }

    fn __repr__(&self) -> String {
        format!("SendPcm(<{} samples at {} Hz>)", self.pcm.len() / 2, self.rate)
    }
}

/// The sample rates ``feed_pcm`` and ``drain_pcm`` take (Hz).
const PCM_RATES: [u32; 5] = [8000, 16_000, 24_000, 32_000, 48_000];

fn check_pcm_rate(rate: u32) -> PyResult<()> {
    if PCM_RATES.contains(&rate) {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!("rate must be 8000, 16000, 24000, 32000 or 48000 (Hz), not {rate}")))
    }
}

/// PCM from the application, packetized into RTP for the call as a caller's phone would.
struct PcmIn {
    rate: u32,
    codec: CodecChange,
    /// From `rate` to the encoder's rate (`None`: the same).
    resampler: Option<Resampler>,
    encoder: Box<dyn Encoder>,
    /// Samples at the encoder's rate not yet sent.
    pending: Vec<i16>,
    /// Samples per packet at the encoder's rate, and RTP clock ticks per packet.
    frame: usize,
    ticks: u32,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    first: bool,
}

impl PcmIn {
    fn new(call: &Call, rate: u32, ssrc: u32) -> PyResult<Self> {
        let codec = call.codec();
        let kind = codec.codec;
        let encoder = kind.encoder(kind.sample_rate_hz()).map_err(|e| PyValueError::new_err(e.to_string()))?;
        // Opus packets must be one of its frame sizes: 20 ms; the others follow the call's ptime.
        let ptime =
            if kind.is_fixed_rate() { call.config().ptime.as_micros().clamp(10_000, 60_000) as u64 } else { 20_000 };
        let frame = (u64::from(encoder.sample_rate_hz()) * ptime / 1_000_000) as usize;
        let ticks = (u64::from(kind.clock_rate_hz()) * ptime / 1_000_000) as u32;
        let resampler = (rate != encoder.sample_rate_hz()).then(|| Resampler::new(rate, encoder.sample_rate_hz()));
        Ok(Self {
            rate,
            codec,
            resampler,
            encoder,
            pending: Vec::new(),
            frame,
            ticks,
            sequence: (ssrc >> 7) as u16,
            timestamp: ssrc.rotate_left(11),
            ssrc,
            first: true,
        })
    }

    /// Adds `samples` (at `self.rate`) and returns the RTP packets of the whole frames.
    fn packets(&mut self, samples: &[i16]) -> Vec<Vec<u8>> {
        match &mut self.resampler {
            Some(r) => r.process(samples, &mut self.pending),
            None => self.pending.extend_from_slice(samples),
        }
        let mut packets = Vec::new();
        let mut at = 0;
        while self.pending.len() - at >= self.frame {
            let mut packet = Vec::with_capacity(12 + self.frame * 2);
            let marker = if self.first { 0x80 } else { 0 };
            packet.push(0x80);
            packet.push(marker | (self.codec.payload_type & 0x7f));
            packet.extend_from_slice(&self.sequence.to_be_bytes());
            packet.extend_from_slice(&self.timestamp.to_be_bytes());
            packet.extend_from_slice(&self.ssrc.to_be_bytes());
            self.encoder.encode(&self.pending[at..at + self.frame], &mut packet);
            packets.push(packet);
            self.first = false;
            self.sequence = self.sequence.wrapping_add(1);
            self.timestamp = self.timestamp.wrapping_add(self.ticks);
            at += self.frame;
        }
        self.pending.drain(..at);
        packets
    }
}

/// The greeting's packets decoded for the application, at the rate it asked for.
struct PcmOut {
    rate: u32,
    codec: CodecKind,
    decoder: Box<dyn Decoder>,
    resampler: Option<Resampler>,
}

impl PcmOut {
    fn new(codec: CodecKind, rate: u32) -> PyResult<Self> {
        let decoder = codec.decoder(codec.sample_rate_hz()).map_err(|e| PyValueError::new_err(e.to_string()))?;
        let resampler = (rate != decoder.sample_rate_hz()).then(|| Resampler::new(decoder.sample_rate_hz(), rate));
        Ok(Self { rate, codec, decoder, resampler })
    }

    fn decode(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut decoded = Vec::new();
        self.decoder.decode(payload, &mut decoded);
        let samples = match &mut self.resampler {
            Some(r) => {
                let mut out = Vec::with_capacity(decoded.len() * 6);
                r.process(&decoded, &mut out);
                out
            }
            None => decoded,
        };
        pcm_to_bytes(&samples)
    }
}

/// Nothing more to do until ``at`` (``time.monotonic()`` seconds) or the next input: wait
/// for a datagram or the deadline, then feed ``rtp``/``tick``. Always the last output of a
/// drained call. ``at`` is never earlier than the latest time given to the call (a deadline
/// already due is that time, exactly), so ``call.tick(timeout.at)`` never raises "time went
/// backwards". Before the call saw its first time (no input yet) ``at`` is ``inf``.
#[pyclass(frozen, eq, module = "voicemail", name = "Timeout")]
#[derive(Debug, Clone, PartialEq)]
pub struct PyTimeout {
    /// The deadline, in the call's clock (``time.monotonic()`` seconds).
    #[pyo3(get)]
    at: f64,
}

#[pymethods]
impl PyTimeout {
    #[classattr]
    fn __match_args__() -> (&'static str,) {
        ("at",)
    }

    #[new]
    #[pyo3(signature = (at))]
    fn new(at: f64) -> Self {
        Self { at }
    }

    fn __repr__(&self) -> String {
        format!("Timeout(at={})", self.at)
    }
}

/// The call moved to a new state: ``"ringing"``, ``"answered"``, ``"greeting"``,
/// ``"beep"``, ``"recording"`` or ``"ended"``.
#[pyclass(frozen, eq, hash, module = "voicemail", name = "StateChanged")]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PyStateChanged {
    /// The new state.
    #[pyo3(get)]
    state: String,
}

#[pymethods]
impl PyStateChanged {
    #[classattr]
    fn __match_args__() -> (&'static str,) {
        ("state",)
    }

    #[new]
    #[pyo3(signature = (state))]
    fn new(state: String) -> Self {
        Self { state }
    }

    fn __repr__(&self) -> String {
        format!("StateChanged(state={:?})", self.state)
    }
}

/// A DTMF digit was received (RFC 4733 in the RTP, or ``Call.dtmf``), once per key press.
#[pyclass(frozen, eq, hash, module = "voicemail", name = "DtmfReceived")]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PyDtmfReceived {
    /// The digit: ``0``-``9``, ``*``, ``#`` or ``A``-``D``.
    #[pyo3(get)]
    digit: String,
}

#[pymethods]
impl PyDtmfReceived {
    #[classattr]
    fn __match_args__() -> (&'static str,) {
        ("digit",)
    }

    #[new]
    #[pyo3(signature = (digit))]
    fn new(digit: String) -> Self {
        Self { digit }
    }

    fn __repr__(&self) -> String {
        format!("DtmfReceived(digit={:?})", self.digit)
    }
}

/// The call ended and its message is stored in the mailbox (the WAV is finalised and synced,
/// the metadata committed, its deliveries queued). Exactly once per call.
#[pyclass(frozen, module = "voicemail", name = "MessageRecorded")]
#[derive(Debug)]
pub struct PyMessageRecorded {
    message: Py<PyMessage>,
}

#[pymethods]
impl PyMessageRecorded {
    #[classattr]
    fn __match_args__() -> (&'static str,) {
        ("message",)
    }

    #[new]
    #[pyo3(signature = (message))]
    fn new(message: Py<PyMessage>) -> Self {
        Self { message }
    }

    /// The message's metadata.
    #[getter]
    fn message(&self, py: Python<'_>) -> Py<PyMessage> {
        self.message.clone_ref(py)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyMessageRecorded>().is_ok_and(|o| self.message.get() == o.get().message.get())
    }

    fn __repr__(&self) -> String {
        format!("MessageRecorded(message={})", self.message.get().__repr__())
    }
}

/// One output, copied out of the call so the GIL is not needed to produce it.
enum Out {
    Rtp(Vec<u8>),
    Pcm(Vec<u8>, u32),
    Timeout(f64),
    State(&'static str),
    Dtmf(char),
    /// The message, and why storing it failed (the mailbox retries it).
    Message(Box<MessageMeta>, Option<String>),
}

impl Out {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(match self {
            Out::Rtp(packet) => Py::new(py, PySendRtp { packet })?.into_any(),
            Out::Pcm(pcm, rate) => Py::new(py, PySendPcm { pcm, rate })?.into_any(),
            Out::Timeout(at) => Py::new(py, PyTimeout { at })?.into_any(),
            Out::State(s) => Py::new(py, PyStateChanged { state: s.to_owned() })?.into_any(),
            Out::Dtmf(d) => Py::new(py, PyDtmfReceived { digit: d.to_string() })?.into_any(),
            Out::Message(meta, failure) => {
                if let Some(error) = failure {
                    log_store_failure(py, meta.id.as_str(), &error);
                }
                let message = Py::new(py, PyMessage::new(*meta))?;
                Py::new(py, PyMessageRecorded { message })?.into_any()
            }
        })
    }
}

/// Logs (Python `logging`, logger ``voicemail``, level ERROR) that a finished message could
/// not be stored yet. Nothing is raised: the mailbox keeps the message and stores it on its
/// next `recover()`.
fn log_store_failure(py: Python<'_>, id: &str, error: &str) {
    let logged = py.import("logging").and_then(|logging| {
        let logger = logging.call_method1("getLogger", ("voicemail",))?;
        logger.call_method1(
            "error",
            ("storing message %s failed (the mailbox retries it on its next recover()): %s", id, error),
        )
    });
    if let Err(e) = logged {
        e.write_unraisable(py, None);
    }
}

/// The call, its clock and its hold on the recording, behind the mutex.
struct Inner {
    call: Call,
    clock: Clock,
    /// Given back to the mailbox with the finished message (`None` afterwards).
    lease: Option<CallLease>,
    mailbox: Mailbox,
    /// `feed_pcm`'s packetizer and `drain_pcm`'s decoder, made at their first use.
    pcm_in: Option<PcmIn>,
    pcm_out: Option<PcmOut>,
}

impl Inner {
    /// The next output (skipping events this version does not know). The message is stored
    /// in the mailbox before it is returned.
    fn poll(&mut self) -> Out {
        loop {
            match self.call.poll_output() {
                Output::SendRtp(p) => return Out::Rtp(p.to_vec()),
                Output::Timeout(at) => return Out::Timeout(self.clock.seconds(at)),
                Output::Event(Event::StateChanged(s)) => return Out::State(s.as_str()),
                Output::Event(Event::DtmfReceived(d)) => return Out::Dtmf(d.as_char()),
                Output::Event(Event::MessageRecorded(meta)) => return self.finish(*meta),
                Output::Event(_) => {}
            }
        }
    }

    /// Stores the finished call's message (fsync, commit, deliveries queued).
    fn finish(&mut self, mut meta: MessageMeta) -> Out {
        let Some(lease) = self.lease.take() else {
            return Out::Message(Box::new(meta), None);
        };
        meta.wav_path = Some(lease.wav_path().to_path_buf());
        match self.mailbox.finish_call(lease, meta.clone(), jiff::Timestamp::now()) {
            Ok(stored) => Out::Message(Box::new(stored), None),
            Err(e) => Out::Message(Box::new(meta), Some(e.to_string())),
        }
    }

    /// Every output up to and including the next `Timeout`.
    fn drain(&mut self, out: &mut Vec<Out>) {
        loop {
            let o = self.poll();
            let done = matches!(o, Out::Timeout(_));
            out.push(o);
            if done {
                return;
            }
        }
    }

    /// Feeds PCM at `rate` as RTP packets of the call's codec, all at `now`.
    fn feed_pcm(&mut self, now: f64, samples: &[i16], rate: u32, ssrc: u32) -> PyResult<()> {
        let t = self.clock.instant(now)?;
        let codec = self.call.codec();
        let stale = self.pcm_in.as_ref().is_none_or(|p| p.rate != rate || p.codec != codec);
        if stale {
            self.pcm_in = Some(PcmIn::new(&self.call, rate, ssrc)?);
        }
        let Some(pcm_in) = self.pcm_in.as_mut() else { return Ok(()) };
        for packet in pcm_in.packets(samples) {
            self.call.handle_input(Input::Rtp(t, &packet)).map_err(BindingError::from)?;
        }
        Ok(())
    }

    /// Like [`Inner::drain`], with each packet's audio decoded to PCM at `rate`.
    fn drain_pcm(&mut self, rate: u32, out: &mut Vec<Out>) -> PyResult<()> {
        loop {
            let o = match self.poll() {
                Out::Rtp(packet) => {
                    let codec = self.call.codec().codec;
                    if self.pcm_out.as_ref().is_none_or(|p| p.rate != rate || p.codec != codec) {
                        self.pcm_out = Some(PcmOut::new(codec, rate)?);
                    }
                    match self.pcm_out.as_mut() {
                        Some(p) => Out::Pcm(p.decode(packet.get(12..).unwrap_or_default()), rate),
                        None => continue,
                    }
                }
                other => other,
            };
            let done = matches!(o, Out::Timeout(_));
            out.push(o);
            if done {
                return Ok(());
            }
        }
    }

    fn handle(&mut self, now: f64, input: impl FnOnce(Instant) -> Input<'static>) -> PyResult<()> {
        let t = self.clock.instant(now)?;
        self.call.handle_input(input(t)).map_err(|e| BindingError::from(e).into())
    }
}

/// One call through the voicemail engine, for integrators who bring their own SIP and RTP:
/// the sans-IO contract of voicemail-core. It owns no socket, no thread and no clock. Calls
/// are made by ``Mailbox.start_call(...)`` (there is no public constructor): the mailbox picks
/// the id, the greeting and the limits, and records into its spool.
///
/// Feed inputs with ``answered``, ``rtp``, ``dtmf``, ``hangup``, ``hold`` and ``tick``, each
/// with the time it happened as ``time.monotonic()`` seconds (any monotonic float clock works;
/// the first time seen is the call's origin). After every input drain ``poll_output()`` until
/// it returns a ``Timeout``: ``SendRtp`` packets are the greeting and beep, paced by those
/// timeouts; events report state changes, DTMF digits and, exactly once, the
/// ``MessageRecorded`` message. A caller who hangs up during the greeting still leaves a
/// message (a valid zero-length WAV).
///
/// Before ``MessageRecorded`` is returned, the message is stored in the mailbox (the WAV
/// synced, the metadata committed, its deliveries queued), so ``message.wav_path`` is set and
/// the message is durable. If storing fails (a full disk), nothing is raised: the failure is
/// logged (``logging.getLogger("voicemail")``, ERROR) and the mailbox stores the message on
/// its next ``recover()``. A call dropped before it ended is recovered by ``recover()`` as
/// ``interrupted``.
///
/// Misuse (an input after the call ended, time going backwards) raises ``CallError``. The
/// GIL is released while the engine processes audio, so calls run in parallel in threads.
#[pyclass(frozen, module = "voicemail", name = "Call")]
pub struct PyCall {
    inner: Mutex<Inner>,
    id: String,
}

impl PyCall {
    /// A call started by the mailbox; `now` is the seconds value of the call's origin, if known.
    pub(crate) fn started(
        mailbox: Mailbox,
        call: Call,
        lease: CallLease,
        base: Instant,
        now: Option<f64>,
    ) -> PyResult<Self> {
        let clock = Clock::new(base, now)?;
        let id = lease.id().as_str().to_owned();
        let inner = Inner { call, clock, lease: Some(lease), mailbox, pcm_in: None, pcm_out: None };
        Ok(Self { inner: Mutex::new(inner), id })
    }
}

impl PyCall {
    /// Runs `f` on the call with the GIL released.
    fn with<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut Inner) -> T + Send) -> T {
        py.detach(|| {
            let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
    }

    fn input(&self, py: Python<'_>, now: f64, input: impl FnOnce(Instant) -> Input<'static> + Send) -> PyResult<()> {
        self.with(py, |inner| inner.handle(now, input))
    }
}

#[pymethods]
impl PyCall {
    /// Refuses: calls are made by ``Mailbox.start_call(...)``.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Err(PyTypeError::new_err(
            "voicemail.Call has no public constructor: start calls with voicemail.Mailbox(config).start_call(caller=...)",
        ))
    }

    /// The call was answered (SIP 200 OK sent): the greeting starts at ``now``. A repeated
    /// answer changes nothing.
    #[pyo3(signature = (now, /))]
    fn answered(&self, py: Python<'_>, now: f64) -> PyResult<()> {
        self.input(py, now, Input::Answered)
    }

    /// A datagram arrived on the call's RTP port at ``now``. Anything may be in it: malformed
    /// packets are dropped and counted in ``stats``, never raised.
    #[pyo3(signature = (now, data, /))]
    fn rtp(&self, py: Python<'_>, now: f64, data: &[u8]) -> PyResult<()> {
        self.with(py, |inner| {
            let t = inner.clock.instant(now)?;
            inner.call.handle_input(Input::Rtp(t, data)).map_err(|e| BindingError::from(e).into())
        })
    }

    /// A DTMF key arrived out of band (SIP INFO) at ``now``: ``0``-``9``, ``*``, ``#``,
    /// ``A``-``D``. The finish key (``#`` by default) skips the greeting or ends the recording.
    #[pyo3(signature = (now, digit, /))]
    fn dtmf(&self, py: Python<'_>, now: f64, digit: &str) -> PyResult<()> {
        let mut chars = digit.chars();
        let d = match (chars.next(), chars.next()) {
            (Some(c), None) => DtmfDigit::from_char(c),
            _ => None,
        }
        .ok_or_else(|| PyValueError::new_err(format!("not a DTMF key (0-9, *, #, A-D): {digit:?}")))?;
        self.input(py, now, move |t| Input::Dtmf(t, d))
    }

    /// The caller hung up (BYE or CANCEL) at ``now``: the call ends and reports its message.
    #[pyo3(signature = (now, /))]
    fn hangup(&self, py: Python<'_>, now: f64) -> PyResult<()> {
        self.input(py, now, Input::Hangup)
    }

    /// The call went on hold at ``now`` (``on_hold=True``: a re-INVITE with sendonly,
    /// inactive or ``c=0.0.0.0``) or came off it (``False``). On hold, a silent media path does
    /// not end the call; the media timeout starts afresh when the hold ends.
    #[pyo3(signature = (now, on_hold, /))]
    fn hold(&self, py: Python<'_>, now: f64, on_hold: bool) -> PyResult<()> {
        self.input(py, now, move |t| Input::Hold(t, on_hold))
    }

    /// Time passed: ``now`` reached (or passed) the last ``Timeout``'s ``at``.
    #[pyo3(signature = (now, /))]
    fn tick(&self, py: Python<'_>, now: f64) -> PyResult<()> {
        self.input(py, now, Input::Tick)
    }

    /// The next thing to do: a ``SendRtp`` to send now, an event (``StateChanged``,
    /// ``DtmfReceived``, ``MessageRecorded``), or the ``Timeout`` until which there is nothing
    /// to do. Drain it until it returns a ``Timeout`` after every input.
    fn poll_output(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.with(py, Inner::poll).into_py(py)
    }

    /// Every output up to and including the next ``Timeout`` (always the last item): the
    /// same as calling ``poll_output()`` until it returns a ``Timeout``.
    fn drain(&self, py: Python<'_>) -> PyResult<Vec<Py<PyAny>>> {
        let mut out = Vec::new();
        self.with(py, |inner| inner.drain(&mut out));
        out.into_iter().map(|o| o.into_py(py)).collect()
    }

    /// Feeds many datagrams, each ``(now, data)``, draining the outputs after each one as the
    /// contract asks, with the GIL released for the whole batch: for recorded streams (a
    /// capture, a file) or to amortise the call overhead. Returns the outputs, the last one
    /// a ``Timeout``. Stops at the first misuse and raises it (earlier outputs are lost).
    #[pyo3(signature = (packets, /))]
    fn rtp_batch(&self, py: Python<'_>, packets: Vec<(f64, PyBackedBytes)>) -> PyResult<Vec<Py<PyAny>>> {
        let mut out = Vec::new();
        self.with(py, |inner| -> PyResult<()> {
            for (now, data) in &packets {
                let t = inner.clock.instant(*now)?;
                inner.call.handle_input(Input::Rtp(t, data)).map_err(BindingError::from)?;
                out.pop_if(|o| matches!(o, Out::Timeout(_)));
                inner.drain(&mut out);
            }
            if out.is_empty() {
                inner.drain(&mut out);
            }
            Ok(())
        })?;
        out.into_iter().map(|o| o.into_py(py)).collect()
    }

    /// The caller's audio as decoded PCM instead of RTP, for front-ends whose media stack
    /// decodes (WebRTC, a sound card): ``pcm`` is 16-bit little-endian mono samples as ``bytes``
    /// (``array.array("h").tobytes()`` on a little-endian machine) at ``rate`` Hz
    /// (8000, 16000, 24000, 32000 or 48000), received at ``now``. The audio is resampled to
    /// the call's codec where the rates differ, cut into packets of the call's ``ptime`` (the
    /// rest waits for the next feed) and fed to the engine as RTP in the call's codec, so
    /// silence detection, the finish key's timing, limits and the recording work as for RTP.
    /// Raises ``ValueError`` for another rate or an odd number of bytes, ``CallError`` after the
    /// call ended. Drain ``drain_pcm``/``drain`` afterwards, as after every input.
    #[pyo3(signature = (now, pcm, rate, /))]
    fn feed_pcm(&self, py: Python<'_>, now: f64, pcm: &[u8], rate: u32) -> PyResult<()> {
        check_pcm_rate(rate)?;
        let samples = pcm_from_bytes(pcm)?;
        // The stream's SSRC: a fixed function of the call's id (deterministic, like the engine).
        let ssrc = self.id.bytes().fold(0x9e37_79b9u32, |h, b| h.rotate_left(5) ^ u32::from(b)) | 1;
        self.with(py, |inner| inner.feed_pcm(now, &samples, rate, ssrc))
    }

    /// ``drain()`` for front-ends that play PCM: every output up to and including the next
    /// ``Timeout``, with each greeting or beep packet as ``SendPcm`` (its audio decoded and
    /// resampled to ``rate`` Hz: 8000, 16000, 24000, 32000 or 48000) instead of ``SendRtp``.
    /// Play each ``SendPcm`` when it comes: the engine paces them by the timeouts, one
    /// ``ptime`` of audio each. Raises ``ValueError`` for another rate.
    #[pyo3(signature = (rate, /))]
    fn drain_pcm(&self, py: Python<'_>, rate: u32) -> PyResult<Vec<Py<PyAny>>> {
        check_pcm_rate(rate)?;
        let mut out = Vec::new();
        self.with(py, |inner| inner.drain_pcm(rate, &mut out))?;
        out.into_iter().map(|o| o.into_py(py)).collect()
    }

    /// The message id the mailbox gave the call.
    #[getter]
    fn id(&self) -> &str {
        &self.id
    }

    /// The current state: ``"ringing"``, ``"answered"``, ``"greeting"``, ``"beep"``,
    /// ``"recording"`` or ``"ended"``.
    #[getter]
    fn state(&self, py: Python<'_>) -> &'static str {
        self.with(py, |inner| inner.call.state().as_str())
    }

    /// Whether the call has ended (its ``MessageRecorded`` was or will be returned).
    #[getter]
    fn ended(&self, py: Python<'_>) -> bool {
        self.with(py, |inner| inner.call.state() == voicemail_core::CallState::Ended)
    }

    /// Samples (8 kHz) recorded so far.
    #[getter]
    fn recorded_samples(&self, py: Python<'_>) -> u64 {
        self.with(py, |inner| inner.call.recorded_samples())
    }

    /// Media counters so far.
    #[getter]
    fn stats(&self, py: Python<'_>) -> PyMediaStats {
        PyMediaStats { stats: self.with(py, |inner| inner.call.stats()) }
    }

    /// The message as known now (end reason ``"interrupted"`` until the call really ends):
    /// what a crash recovery would complete.
    fn provisional_message(&self, py: Python<'_>) -> PyMessage {
        PyMessage::new(self.with(py, |inner| inner.call.provisional_meta()))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("Call(id={:?}, state={:?})", self.id, self.state(py))
    }
}
