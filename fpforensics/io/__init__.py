"""Input and output: images and HDF5 stores."""
