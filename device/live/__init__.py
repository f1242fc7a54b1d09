"""The Gemini Live session: connect, send, receive, tool round trips."""
