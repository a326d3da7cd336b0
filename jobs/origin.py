"""Where a run came from: the run tag ``calliper/launched_by`` that every door sets.

The Dagster UI's "Launched by" column names a schedule or sensor from Dagster's own tags and
reads "Manually launched" for every other run. So each door tags its runs:

- ``make run``: ``make-run`` (the Makefile passes ``--launched-by make-run``);
- ``calliper run``: ``cli`` (the default of its ``--launched-by``);
- ``python -m jobs.run_city``: ``jobs.run_city`` (:func:`jobs.run_city.main`);
- :func:`jobs.run_city.materialize_city` called from Python: ``python-api`` (its default);
- a schedule tick: ``schedule`` (the schedule's ``RunRequest``);
- the automation sensor: ``sensor`` (the sensor's ``run_tags``);
- the UI's Launchpad or the GraphQL API: ``graphql-or-ui`` (the jobs' tags, which a GraphQL
  launch merges into the run's; every other door overrides the value).

The command-line and Python doors also set the tag ``user`` (the key the UI's "Launched by"
column shows for a person) to the same value, so that column reads ``make-run`` or ``cli``
instead of "Manually launched". A UI launch also carries Dagster's own ``dagster/from_ui``.
No dagster import here: the CLI's parser reads these names.
"""

LAUNCHED_BY = "calliper/launched_by"
USER_TAG = "user"  # shown by the UI's "Launched by" column

MAKE_RUN = "make-run"
CLI = "cli"
RUN_CITY_MODULE = "jobs.run_city"
PYTHON_API = "python-api"
SCHEDULE = "schedule"
SENSOR = "sensor"
WEBSERVER = "graphql-or-ui"


def door_tags(launched_by: str) -> dict[str, str]:
    """The run tags of a run launched from the command line or Python (``launched_by``)."""
    return {LAUNCHED_BY: launched_by, USER_TAG: launched_by}
