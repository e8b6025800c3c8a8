"""The aggan demo in the layout Hugging Face Spaces expects: ``python app.py`` serves it.

AGGAN_MODEL picks the model (a folder, a name in models/ or a Hub id); the default is the
horse-to-zebra model shipped in this repository.
"""

import os

from aggan.demo import build_demo

demo = build_demo(os.environ.get("AGGAN_MODEL", "horse2zebra-128"))

if __name__ == "__main__":
    demo.launch()
