"""A private PulseAudio daemon: audio paced in real time, and an acoustic loopback.

The ALSA file devices of `device.sim.alsa` are not paced, so anything about timing (latency,
echo, barge-in) needs a server with a clock. This one lives entirely in a temporary directory
(HOME, XDG_RUNTIME_DIR and PULSE_RUNTIME_PATH point into it), runs as our child process, and
is stopped by its own process id, so it never touches a user's sound server.

Layout: a null sink is the speaker (24 kHz); a second null sink is the microphone feed (16 kHz)
whose monitor, remapped, is the microphone. Both are the server's defaults, so with
libasound2-plugins PyAudio reaches them as ALSA's `default` device. With `loopback_ms`, what
the speaker plays is also sent into the microphone feed, `loopback_ms` later (plus about 2 ms),
as a speaker next to a mic would.

Needs `pulseaudio pulseaudio-utils libasound2-plugins` from apt.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from device.sim.alsa import forget_alsa_config

SPEAKER = "wv_speaker"
MIC_FEED = "wv_mic_feed"
MIC = "wv_mic"
DISCARD = "wv_discard"


class PulseError(RuntimeError):
    """The private PulseAudio server could not be started or used; the message says why."""


class PulseServer:
    def __init__(
        self,
        root: Path,
        *,
        speaker_rate: int = 24_000,
        mic_rate: int = 16_000,
        loopback_ms: int | None = None,
        start_timeout_s: float = 15.0,
    ) -> None:
        self.root = Path(root).resolve()
        self.speaker_rate = speaker_rate
        self.mic_rate = mic_rate
        self.loopback_ms = loopback_ms
        self.start_timeout_s = start_timeout_s
        self.runtime = self.root / "runtime"
        self.socket = self.runtime / "pulse" / "native"
        self.log_path = self.root / "pulseaudio.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def server(self) -> str:
        """The address clients pass as `PULSE_SERVER` or `-s`."""
        return f"unix:{self.socket}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PULSE_SERVER", None)
        env.update(
            HOME=str(self.root / "home"),
            XDG_RUNTIME_DIR=str(self.runtime),
            PULSE_RUNTIME_PATH=str(self.runtime / "pulse"),
            XDG_CONFIG_HOME=str(self.root / "home" / ".config"),
        )
        return env

    def _command(self) -> list[str]:
        binary = shutil.which("pulseaudio")
        if binary is None:
            raise PulseError(
                "pulseaudio is not installed; install it with "
                "`apt-get install -y --no-install-recommends pulseaudio pulseaudio-utils "
                "libasound2-plugins`"
            )
        modules = [
            f"module-native-protocol-unix auth-anonymous=1 socket={self.socket}",
            f"module-null-sink sink_name={SPEAKER} rate={self.speaker_rate} channels=1 "
            "format=s16le",
            f"module-null-sink sink_name={MIC_FEED} rate={self.mic_rate} channels=1 format=s16le",
            f"module-remap-source source_name={MIC} master={MIC_FEED}.monitor channels=1",
        ]
        # A null sink with only high-latency listeners renders in blocks of up to two seconds,
        # which starves low-latency clients such as PyAudio. A 10 ms loopback reading the
        # speaker keeps it ticking like a sound card: into the mic feed when echo is wanted,
        # into a discarding sink otherwise.
        echo = self.loopback_ms is not None
        if not echo:
            modules.append(
                f"module-null-sink sink_name={DISCARD} rate={self.speaker_rate} channels=1"
            )
        modules.append(
            f"module-loopback source={SPEAKER}.monitor sink={MIC_FEED if echo else DISCARD} "
            f"latency_msec={self.loopback_ms if echo else 10} source_dont_move=true "
            "sink_dont_move=true"
        )
        command = [
            binary,
            "-n",  # no default.pa: only the modules below
            "--daemonize=no",  # our child, so we stop exactly it
            "--exit-idle-time=-1",
            "--use-pid-file=no",
            "--log-target=stderr",
            "--disable-shm=yes",  # memfd blocks fail between some client/server pairs here
        ]
        for module in modules:
            command += ["-L", module]
        return command

    def start(self) -> None:
        if self._process is not None:
            return
        for path in (self.root / "home", self.runtime / "pulse"):
            path.mkdir(parents=True, exist_ok=True)
        self.runtime.chmod(0o700)
        command = self._command()
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            command,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready()
            self.pactl("set-default-sink", SPEAKER)
            self.pactl("set-default-source", MIC)
            # Each null sink rendered a two-second block when it was created, before anything
            # asked for low latency; a suspend and resume throws that block away.
            sinks = [SPEAKER, MIC_FEED] + ([] if self.loopback_ms is not None else [DISCARD])
            for sink in sinks:
                self.pactl("suspend-sink", sink, "1")
                self.pactl("suspend-sink", sink, "0")
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PulseError(
                    f"pulseaudio exited with status {self._process.returncode} while starting; "
                    f"its log says: {self._log_tail()}"
                )
            if self.socket.exists() and self._pactl_ok():
                return
            time.sleep(0.05)
        raise PulseError(
            f"pulseaudio did not answer on {self.socket} within {self.start_timeout_s:.0f} s; "
            f"its log says: {self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-5:]) or "(empty log)"

    def _pactl_ok(self) -> bool:
        result = subprocess.run(
            ["pactl", "-s", self.server, "info"], capture_output=True, check=False, timeout=10
        )
        return result.returncode == 0

    def pactl(self, *args: str) -> str:
        if shutil.which("pactl") is None:
            raise PulseError("pactl is missing; install pulseaudio-utils")
        result = subprocess.run(
            ["pactl", "-s", self.server, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        if result.returncode:
            raise PulseError(f"pactl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @contextlib.contextmanager
    def as_default(self) -> Iterator[None]:
        """Make this process's ALSA `default` device (and so PyAudio's) this server.

        ALSA decides at configuration load whether PulseAudio is running, so its cached
        configuration is dropped here; `PyAudio` instances created inside the context see it.
        """
        previous = os.environ.get("PULSE_SERVER")
        os.environ["PULSE_SERVER"] = self.server
        forget_alsa_config()
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("PULSE_SERVER", None)
            else:
                os.environ["PULSE_SERVER"] = previous
            forget_alsa_config()

    def feed_mic(self, wav: Path) -> subprocess.Popen[bytes]:
        """Start playing `wav` into the microphone feed; wait on the process to know it ended."""
        return subprocess.Popen(
            ["paplay", "-s", self.server, f"--device={MIC_FEED}", "--latency-msec=20", str(wav)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def say_into_mic(self, wav: Path) -> None:
        """Play `wav` into the microphone feed from the server's own memory.

        `feed_mic`'s paplay is a client with a 20 ms buffer: on a loaded machine it is not
        scheduled in time, the server fills the gaps with silence, and a wake phrase arrives
        chopped (it was then not detected at all). Uploaded to the server's sample cache, the
        audio is played by the server's own thread, as a worker's voice would be: whole.
        """
        name = f"wv_{wav.stem}_{time.monotonic_ns()}"
        self.pactl("upload-sample", str(wav), name)
        self.pactl("play-sample", name, MIC_FEED)

    def record_speaker(self, wav: Path) -> subprocess.Popen[bytes]:
        """Start recording what the speaker plays into `wav`; end it with `stop_recording`."""
        return subprocess.Popen(
            [
                "parecord",
                "-s",
                self.server,
                f"--device={SPEAKER}.monitor",
                "--file-format=wav",
                "--format=s16le",
                f"--rate={self.speaker_rate}",
                "--channels=1",
                "--latency-msec=20",
                str(wav),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    @staticmethod
    def stop_recording(process: subprocess.Popen[bytes]) -> None:
        """Stop a `record_speaker` process so that it finishes its WAV header."""
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
