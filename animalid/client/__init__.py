"""PC 1: send photos by mail and wait for the answers (files, or the camera in ``capture``)."""
