"""The Gemini Live session: connect, send, receive, tool round trips, and surviving faults.

session      one conversation across connections (reconnect loop, content, outcome)
protocols    what the conversation needs (connector, SDK session) and its Outcome
link         one connection: send, receive, GoAway / stall / deadline watch
limits       idle timeout, end_session and the maximum length
outbox       the outgoing queue and the replay ledger (what the server has not consumed)
calls        function calls across connections: run once, answer once, time out, cancel
failures     what a failure means: retry, fatal, offline; GoAway's timeLeft
backoff      exponential backoff with jitter
connect      SDK client, connect config, the resumable connector, ephemeral-token auth
tokens       the device's client for the site token broker
cues         pre-rendered spoken cues (offline, error, denied)
local_tools  tools answered by the live layer itself (end_session)
policy       session limits and reconnect timing from settings
"""
