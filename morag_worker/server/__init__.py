"""The coordinator side of the protocol: keys, the leased task queue, files, results, search."""
