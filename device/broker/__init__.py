"""The site token broker: devices get single-use Gemini Live tokens, never the API key.

`warehouse-voice token-broker serve` runs on a site server that holds the long-lived Gemini API
key. Each device authenticates with its own broker token (only SHA-256 digests are stored, in
`devices.py`) and gets an ephemeral token minted through google-genai's `auth_tokens.create`
(`mint.py`), locked to the site's model and session config, usable for one new session.
"""
