"""Serving: the torch-free inference engine (:mod:`dermsight.serve.engine`), the Grad-CAM overlay
(:mod:`dermsight.serve.overlay`), the REST API (prediction and tracking routers) and the web app.
Nothing here imports torch; images are decoded by :mod:`dermsight.imaging`."""
