"""How long a conversation may live, how it reconnects, and when it gives up: one place."""

from __future__ import annotations

from dataclasses import dataclass

from device.config import LiveSettings

# 16 kHz PCM16 mono: what the replay buffers count audio in.
AUDIO_BYTES_PER_S = 32000


@dataclass(frozen=True)
class SessionPolicy:
    # End the conversation at the next turn boundary once it is this old (0: never).
    max_session_s: float = 0.0
    # Reconnect this long before a GoAway's timeLeft runs out, even mid-reply.
    goaway_margin_s: float = 2.0
    # Backoff between reconnect attempts: base doubling up to cap, full jitter.
    reconnect_base_s: float = 0.5
    reconnect_cap_s: float = 8.0
    # Stop trying to resume once the link has been down this long.
    reconnect_max_s: float = 30.0
    # Longest wait between reachability probes while offline.
    offline_probe_max_s: float = 30.0
    # A tool call that has not returned by then is answered with a TOOL_TIMEOUT error.
    tool_timeout_s: float = 8.0
    # No server message this long after the last tool answer: resume the session.
    stall_timeout_s: float = 10.0
    # After turnComplete, how long a switch waits for the resumption handle that follows it.
    handle_wait_s: float = 1.0
    # Input audio kept for re-sending after a reconnect (and queued while disconnected).
    replay_audio_s: float = 15.0
    # end_session / max_session_s: close anyway if the reply has not finished by then.
    end_grace_s: float = 15.0

    @property
    def replay_audio_bytes(self) -> int:
        return int(self.replay_audio_s * AUDIO_BYTES_PER_S)

    @classmethod
    def from_settings(cls, live: LiveSettings) -> SessionPolicy:
        return cls(
            max_session_s=live.max_session_s,
            goaway_margin_s=live.goaway_margin_s,
            reconnect_base_s=live.reconnect_base_s,
            reconnect_cap_s=live.reconnect_cap_s,
            reconnect_max_s=live.reconnect_max_s,
            offline_probe_max_s=live.offline_probe_max_s,
            tool_timeout_s=live.tool_timeout_s,
            stall_timeout_s=live.stall_timeout_s,
            replay_audio_s=live.replay_audio_s,
        )
