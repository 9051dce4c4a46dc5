"""Separate a whole library: on a Ray cluster, or on a local process pool, through one code path.

``library`` walks folders, MUSDB-style trees and manifests into tracks; ``store`` is the SQLite manifest that
makes runs resumable; ``worker`` separates one track with ``stemforge.separate`` (same outputs and layout as
``stemforge separate``); ``runners`` run the workers (Ray tasks or pool processes, bounded retries for a dead
worker); ``driver`` plans against the manifest, dispatches and sums up.
"""
