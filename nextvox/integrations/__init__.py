"""nextvox inside the players people already use: Subsonic/OpenSubsonic servers and MPD.

Each module is a thin layer over the library (``nextvox.recommend``, ``nextvox.playlists``,
``nextvox.voicepath``) and needs the ``subsonic`` extra (``pip install nextvox[subsonic]``).
"""
