#!/usr/bin/env bash
# The main job end to end: set up, make the demo library, analyse it, recommend by voice.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
library=${1:-demo-library}
data=${NEXTVOX_DATA_DIR:-nextvox-data}
.venv/bin/nextvox demo "$library"
.venv/bin/nextvox analyze "$library" --data-dir "$data"
.venv/bin/nextvox status "$library" --data-dir "$data"
# Ask for voices like the first song of the library's labels.
query=$(.venv/bin/python -c "import csv,sys; print(next(csv.DictReader(open(sys.argv[1])))['path'])" "$library/labels.csv")
.venv/bin/nextvox recommend "$library" "$library/$query" -k 5 --data-dir "$data"
# The same, with the melody in the score: songs sung alike and to a like tune.
.venv/bin/nextvox recommend "$library" "$library/$query" -k 5 --melody-weight 0.5 --data-dir "$data"
