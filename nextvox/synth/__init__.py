"""nextvox's own singing library: real recorded speakers sing folk melodies over MIDI accompaniment."""
