"""nextvox's own singing library: real recorded speakers sing folk melodies over MIDI accompaniment.

See docs/synth.md for the voices, the singing methods and the measured pitch accuracy.
"""

from nextvox.synth.library import render_library

__all__ = ["render_library"]
