"""Dataset use cases, the datasets domain's face for the API, the CLI, the worker and other domains:
recipients (``recipients``), building releases (``build``, from a request checked by ``request``),
listing, showing and verifying them (``queries``, ``verify``), and build jobs (``jobs``)."""

from __future__ import annotations

from consentry.datasets.build import ACCOUNT_FACTS as ACCOUNT_FACTS
from consentry.datasets.build import build_release as build_release
from consentry.datasets.folder import README as README
from consentry.datasets.folder import REMOVALS as REMOVALS
from consentry.datasets.folder import WORK as WORK
from consentry.datasets.jobs import JOB_KIND as JOB_KIND
from consentry.datasets.jobs import abandon_job as abandon_job
from consentry.datasets.jobs import create_job as create_job
from consentry.datasets.jobs import get_job as get_job
from consentry.datasets.jobs import run_job as run_job
from consentry.datasets.queries import get_recipient as get_recipient
from consentry.datasets.queries import get_release as get_release
from consentry.datasets.queries import list_releases as list_releases
from consentry.datasets.queries import recipient_names as recipient_names
from consentry.datasets.recipients import NAME as NAME
from consentry.datasets.recipients import add_recipient as add_recipient
from consentry.datasets.recipients import list_recipients as list_recipients
from consentry.datasets.request import CheckedRequest as CheckedRequest
from consentry.datasets.request import check_request as check_request
from consentry.datasets.verify import VerifyReport as VerifyReport
from consentry.datasets.verify import find_releases as find_releases
from consentry.datasets.verify import read_manifest as read_manifest
from consentry.datasets.verify import verify_history as verify_history
from consentry.datasets.verify import verify_release as verify_release
