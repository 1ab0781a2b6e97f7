"""True labels of answered predictions, for model-quality results: the labels table and its
store. Each row keeps the variant and score the prediction was answered with (from its label
token), so nothing about a prediction is written when it is answered."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ml_api.records.engine import retrying, translated, utcnow
from ml_api.records.schema import DOUBLE, ID, TIME, Base, ShadowPrediction


class Label(Base):
    """The true label (0 or 1) of one answered prediction: one row per request."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("experiment_id", "request_id", name="uq_label_request"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    request_id: Mapped[str] = mapped_column(String(64))
    variant: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(DOUBLE)  # the positive class's probability
    label: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(TIME)


_labels = Label.__table__
_shadow = ShadowPrediction.__table__
INSERT_LABEL = insert(_labels)


class LabelStore:
    """Labels in SQL: recorded once per request, read per variant and paired with shadow
    predictions."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @retrying()
    def record(self, experiment_id: int, request_id: str, variant: str, score: float,
               label: int) -> bool:
        """Store a label; True if this request's label was stored before (kept, not counted
        twice)."""
        try:
            with translated("recording a label"), self.engine.begin() as conn:
                conn.execute(INSERT_LABEL, {
                    "experiment_id": experiment_id, "request_id": request_id,
                    "variant": variant, "score": score, "label": label,
                    "created_at": utcnow()})
            return False
        except IntegrityError as exc:
            message = str(exc.orig)
            if "uq_label_request" in message or "labels.experiment_id" in message:
                return True
            raise

    def scored(self, experiment_id: int) -> dict[str, tuple[list[float], list[int]]]:
        """Per variant: (scores, labels) of its labelled predictions."""
        with translated("reading labels"), self.engine.connect() as conn:
            rows = conn.execute(select(_labels.c.variant, _labels.c.score, _labels.c.label)
                                .where(_labels.c.experiment_id == experiment_id)
                                .order_by(_labels.c.id)).all()
        by_variant: dict[str, tuple[list[float], list[int]]] = {}
        for variant, score, label in rows:
            scores, labels = by_variant.setdefault(variant, ([], []))
            scores.append(score)
            labels.append(label)
        return by_variant

    def paired(self, experiment_id: int) -> dict[str, tuple[list[float], list[float],
                                                            list[int]]]:
        """Per shadow variant: (primary scores, shadow scores, labels) of the labelled
        requests both models scored, in the order they were labelled."""
        query = (select(_shadow.c.shadow_variant, _shadow.c.primary_score,
                        _shadow.c.shadow_score, _labels.c.label)
                 .join(_labels, (_labels.c.experiment_id == _shadow.c.experiment_id)
                       & (_labels.c.request_id == _shadow.c.request_id))
                 .where(_shadow.c.experiment_id == experiment_id,
                        _shadow.c.primary_score.is_not(None),
                        _shadow.c.shadow_score.is_not(None))
                 .order_by(_labels.c.id))
        with translated("reading paired labels"), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        pairs: dict[str, tuple[list[float], list[float], list[int]]] = {}
        for variant, primary, shadow, label in rows:
            entry = pairs.setdefault(variant, ([], [], []))
            entry[0].append(primary)
            entry[1].append(shadow)
            entry[2].append(label)
        return pairs
