"""What a user reads when an S3 call fails for a usual reason (setfit_core/artifacts/s3.py `explain`)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from setfit_core.artifacts.retry import StorageUnavailableError
from setfit_core.artifacts.s3 import explain, explained, is_explained

WHAT, URI = "read train_data s3://data/train.parquet", "s3://data/train.parquet"


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": 403}},
                       "GetObject")


def _raised_from(cause: BaseException) -> OSError:
    """As s3fs raises it: its own OSError, chained to botocore's."""
    try:
        raise OSError("s3fs wrapper") from cause
    except OSError as exc:
        return exc


@pytest.mark.parametrize(("cause", "kind", "text"), [
    (NoCredentialsError(), PermissionError,
     "no AWS credentials to read train_data s3://data/train.parquet: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    (_client_error("InvalidAccessKeyId"), PermissionError,
     "the AWS credentials were refused to read train_data s3://data/train.parquet (InvalidAccessKeyId)"),
    (_client_error("NoSuchBucket"), FileNotFoundError, "bucket 'data' does not exist"),
    (_client_error("AccessDenied"), PermissionError, "access denied to read train_data s3://data/train.parquet"),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), ConnectionError,
     "could not reach S3 to read train_data s3://data/train.parquet: is the S3 endpoint up"),
])
def test_usual_causes_name_what_to_set(cause, kind, text):
    for raised in (cause, _raised_from(cause)):
        better = explain(raised, WHAT, URI)
        assert isinstance(better, kind) and str(better).startswith(text), better


def test_exhausted_retries_point_at_the_endpoint_and_other_errors_pass_through():
    better = explain(StorageUnavailableError("could not read s3://x after 4 attempts: timeout"), WHAT, URI)
    assert isinstance(better, StorageUnavailableError) and "AWS_ENDPOINT_URL" in str(better)
    assert explain(ValueError("a bad row"), WHAT, URI) is None
    with pytest.raises(ValueError, match="a bad row"), explained(WHAT, URI):
        raise ValueError("a bad row")


def test_explained_errors_are_marked_and_chained_and_local_paths_untouched():
    with pytest.raises(PermissionError) as caught, explained(WHAT, URI):
        raise NoCredentialsError()
    assert is_explained(caught.value) and isinstance(caught.value.__cause__, NoCredentialsError)
    with pytest.raises(PermissionError, match="denied") as caught, explained("read /x", "/x"):
        raise PermissionError("denied")
    assert not is_explained(caught.value)
