"""The MLflow Model Registry, read and written: versions, aliases, tags and model cards; thin
wrappers.

Apart from `imgclf.promotion.gate`, the promotion gate: the decision is a pure function of numbers,
tested without a store, while this module is the I/O that acts on it (and needs a server).
Importing it loads no Keras: the champion's model is loaded inside `load_version_model`.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from imgclf.errors import first_line
from imgclf.promotion.gate import PromotionError

if TYPE_CHECKING:
    import keras
    from mlflow import MlflowClient

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
CARD_ARTIFACT = "model_card.md"  # the promoted card's name among the run's artifacts


def registry_client(tracking_uri: str) -> MlflowClient:
    """A client whose tracking and registry stores are both the given URI."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def get_aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """Alias -> version of the registered model; empty when it does not exist yet."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise
    return {alias: str(version) for alias, version in model.aliases.items()}


def _run_model_id(client: MlflowClient, run_id: str) -> str:
    from imgclf.tracking.runs import run_model_id

    model_id = run_model_id(client, run_id)
    if model_id is None:
        raise PromotionError(
            f"MLflow run {run_id} logged no model; train with mlflow.log_model: true to promote"
        )
    return model_id


def register_run_model(client: MlflowClient, name: str, run_id: str) -> str:
    """Register the run's logged model as a version of `name` (once) and alias it challenger."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    # A re-run of the gate for the same run reuses its version rather than adding a copy.
    existing = [v for v in client.search_model_versions(f"run_id='{run_id}'") if v.name == name]
    if existing:
        version = str(max(int(v.version) for v in existing))
    else:
        model_id = _run_model_id(client, run_id)
        source = client.get_logged_model(model_id).model_uri
        created = client.create_model_version(name, source, run_id=run_id, model_id=model_id)
        version = str(created.version)
    client.set_registered_model_alias(name, CHALLENGER, version)
    return version


def load_version_model(client: MlflowClient, name: str, version: str) -> keras.Model:
    """A registered version's Keras model, read from its .keras file; nothing is unpickled."""
    import mlflow

    from imgclf.model.loading import load_model_file

    uri = client.get_model_version_download_uri(name, version)
    with tempfile.TemporaryDirectory(prefix="imgclf-champion-") as folder:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=folder, tracking_uri=client.tracking_uri
        )
        files = sorted(Path(local).rglob("*.keras"))
        if len(files) != 1:
            raise PromotionError(
                f"version {version} of {name!r} holds {len(files)} .keras files, expected one"
            )
        return load_model_file(files[0])


def tag_version(client: MlflowClient, name: str, version: str, tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def describe_version(client: MlflowClient, name: str, version: str, description: str) -> None:
    """Set the version's description (its model card), shown on its page in the MLflow UI."""
    client.update_model_version(name, version, description=description)


def log_run_card(client: MlflowClient, run_id: str, card: str) -> None:
    """Keep the card as `model_card.md` among the run's artifacts, when the store allows it.

    The registry already holds the card as the version's description, so an artifact store that
    refuses the file (no credentials for its bucket, a read-only folder) costs a warning only.
    """
    try:
        client.log_text(run_id, card, CARD_ARTIFACT)
    except Exception as error:  # artifact stores raise their own types (boto, azure, OSError)
        print(
            f"warning: could not log {CARD_ARTIFACT} into run {run_id}: {first_line(error)}; "
            "the version's description holds the card",
            file=sys.stderr,
        )


def crown(client: MlflowClient, name: str, version: str, old_champion: str | None) -> None:
    """champion -> version; the old champion keeps alias previous."""
    # previous moves first: a failure in between leaves the old champion still serving.
    if old_champion is not None and old_champion != version:
        client.set_registered_model_alias(name, PREVIOUS, old_champion)
    client.set_registered_model_alias(name, CHAMPION, version)
