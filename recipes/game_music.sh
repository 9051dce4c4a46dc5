#!/usr/bin/env bash
# Real produced music as plain mixtures (no stems), for MixIT (issue #12 item 3): the game-music packages
# wesnoth-1.16-music, warzone2100-music and nexuiz-music (GPL-2+; DATA_LICENCES.md), decoded to 44.1 kHz stereo
# FLAC, one song folder per track with a single mixture.flac, the layout `find_mixture_songs` reads.
#   apt-get install wesnoth-1.16-music warzone2100-music nexuiz-music ffmpeg unzip
#   bash recipes/game_music.sh runs/data/game_music
set -euo pipefail
out=${1:-runs/data/game_music}
mkdir -p "$out"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
unzip -q -o /usr/share/games/nexuiz/data/music.pk3 'sound/cdtracks/*.ogg' -d "$tmp/nexuiz"
decode() {  # decode FILE NAME
    local dir="$out/$2"
    [ -s "$dir/mixture.flac" ] && return 0
    mkdir -p "$dir"
    ffmpeg -nostdin -loglevel error -y -i "$1" -ac 2 -ar 44100 -sample_fmt s16 "$dir/.mixture.tmp.flac"
    mv "$dir/.mixture.tmp.flac" "$dir/mixture.flac"
}
for f in /usr/share/games/wesnoth/1.16/data/core/music/*.ogg; do decode "$f" "wesnoth_$(basename "$f" .ogg)"; done
find /usr/share/games/warzone2100/music -name '*.opus' | sort | while read -r f; do
    decode "$f" "warzone2100_$(basename "$(dirname "$f")")_$(basename "$f" .opus)"; done
for f in "$tmp"/nexuiz/sound/cdtracks/*.ogg; do decode "$f" "nexuiz_$(basename "$f" .ogg)"; done
echo "$(ls "$out" | wc -l) songs in $out"
