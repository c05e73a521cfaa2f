"""Serving: the torch-free inference engine (:mod:`dermsight.serve.engine`), image decoding
(:mod:`dermsight.serve.imageio`), the REST API and the web app. Nothing here imports torch."""
