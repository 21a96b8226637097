"""The browser side, shipped as package data: the cookie banner (`banner/`: its sources and the demo shop page) and
the preference center's embed loader (`embed.js`). No Python code: a package only so that an installed wheel
carries these files and the server finds them with importlib.resources (`server/banner/bundle.py`,
`preference_center/center.py`)."""
