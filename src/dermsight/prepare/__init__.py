"""The prepare stage: validate, measure, de-duplicate and split a source into a manifest.

Entry point: ``dermsight.prepare.pipeline.run_prepare``.
"""
