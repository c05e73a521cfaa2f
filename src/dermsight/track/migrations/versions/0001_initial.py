"""initial schema: api_keys, subjects, series, photos

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    op.create_table(
        "subjects",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("key_id", sa.String(16),
                  sa.ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_subjects_key_id", "subjects", ["key_id"])
    op.create_table(
        "series",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("subject_id", sa.String(32),
                  sa.ForeignKey("subjects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("body_site", sa.String(100), nullable=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_series_subject_id", "series", ["subject_id"])
    op.create_table(
        "photos",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("series_id", sa.String(32),
                  sa.ForeignKey("series.id", ondelete="CASCADE"), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pixel_sha256", sa.String(64), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("storage_uri", sa.Text, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("prediction_json", sa.Text, nullable=True),
        sa.Column("quality_json", sa.Text, nullable=True),
        sa.Column("tone_json", sa.Text, nullable=True),
        sa.Column("lesion_json", sa.Text, nullable=True),
        sa.Column("severity", sa.Float, nullable=True),
        sa.Column("embedding", sa.LargeBinary, nullable=True),
        sa.Column("embedding_dim", sa.Integer, nullable=True),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("flag_reason", sa.Text, nullable=True),
        sa.UniqueConstraint("series_id", "pixel_sha256", name="uq_photo_series_pixels"),
    )
    op.create_index("ix_photos_series_id", "photos", ["series_id"])
    op.create_index("ix_photos_content_sha256", "photos", ["content_sha256"])


def downgrade() -> None:
    op.drop_table("photos")
    op.drop_table("series")
    op.drop_table("subjects")
    op.drop_table("api_keys")
