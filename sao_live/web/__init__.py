"""The web page `sao-live serve` serves: prompts, the queue, the clip library, the pads, the status.

`server.WebServer` runs on the daemon's own event loop (aiohttp) and acts through the same
`Controller` as the OSC handlers, so a page and an OSC client get the same error codes and
sentences. `hub.Hub` turns the event bus into WebSocket messages. `guard.WebGuard` keeps other
web pages the musician visits out (Host, Origin, and a token when bound beyond this machine).
No torch here: this runs in the control process. See docs/web.md.
"""
