"""The browser side, as package data: the cookie banner (`banner/`: its ES module sources, its demo shop page and
`banner/dist/`, the committed esbuild build the server serves; a wheel carries the build and the demo, not the
sources) and the preference center's embed loader (`embed.js`). No Python code: a package only so that an installed
wheel carries these files and the server finds them with importlib.resources (`server/banner/bundle.py`,
`preference_center/center.py`)."""
