"""Stage 1, images in: decoding (``decode``), crops (``crops``), real photos (``real``), folders by model (``folders``)."""
