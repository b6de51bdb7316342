"""Files: reading and writing fpt files (HDF5 stamps, atomic replacement, locks, JSON, safe names)."""
