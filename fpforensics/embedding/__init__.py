"""Stage 5, embedding: the one loop from images to rows (``loop``), its cache (``cache``), ``fpt embed`` files."""
