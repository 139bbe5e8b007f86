"""JSON shapes of the GitHub simulator, checked against GitHub's OpenAPI description.

``simple-user``, ``repository``/``minimal-repository``, ``workflow-run``, ``job`` and
``runner`` of ``github/rest-api-description`` (see tests/specs/README.md).
"""

from __future__ import annotations

import time
from typing import Any

from tests.forgesim.faults import FaultBook
from tests.forgesim.github.model import API, Job, Repo, Run, Runner, iso


class Entities:
    """Mixin of :class:`~tests.forgesim.github.state.GitHubSim`: builds the JSON objects."""

    root_url: str
    orgs: dict[str, int]
    repos: dict[str, Repo]
    jobs: dict[int, Job]

    faults: FaultBook

    def run_status(self, run: Run) -> str:
        raise NotImplementedError

    # -- churn: what changes while a job runs (the ``churn`` fault) -------------------

    def run_updated_at(self, run: Run, status: str) -> float:
        if status == "in_progress" and self.faults.active("churn") is not None:
            return time.time()
        return run.updated_at

    def steps_json(self, job: Job) -> list[dict[str, Any]]:
        """Steps of an in-progress job while ``churn`` is live: one more completes every
        ``step_seconds`` (GitHub updates a job's steps as the runner reports them; see
        octokit/webhooks ``in_progress.with-queued-steps``). Otherwise none, as before."""
        churn = self.faults.active("churn")
        if churn is None or job.status != "in_progress" or job.started_at is None:
            return []
        step = max(0.001, float(churn.params.get("step_seconds", 1.0)))
        done = min(int((time.time() - job.started_at) / step), 98)
        steps: list[dict[str, Any]] = []
        for number in range(1, done + 3):
            start = job.started_at + (number - 1) * step
            status = (
                "completed" if number <= done else "in_progress" if number == done + 1 else "queued"
            )
            steps.append(
                {
                    "name": f"Step {number}",
                    "status": status,
                    "conclusion": "success" if status == "completed" else None,
                    "number": number,
                    "started_at": None if status == "queued" else iso(start),
                    "completed_at": iso(start + step) if status == "completed" else None,
                }
            )
        return steps

    def user_json(self, login: str) -> dict[str, Any]:
        base = f"{self.root_url}{API}/users/{login}"
        return {
            "login": login,
            "id": abs(hash(login)) % 100000,
            "node_id": f"U_{login}",
            "avatar_url": f"{self.root_url}/avatars/{login}",
            "gravatar_id": "",
            "url": base,
            "html_url": f"{self.root_url}/{login}",
            "followers_url": f"{base}/followers",
            "following_url": f"{base}/following{{/other_user}}",
            "gists_url": f"{base}/gists{{/gist_id}}",
            "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{base}/subscriptions",
            "organizations_url": f"{base}/orgs",
            "repos_url": f"{base}/repos",
            "events_url": f"{base}/events{{/privacy}}",
            "received_events_url": f"{base}/received_events",
            "type": "Organization" if login in self.orgs else "User",
            "site_admin": False,
        }

    def repo_json(self, repo: Repo) -> dict[str, Any]:
        base = f"{self.root_url}{API}/repos/{repo.full_name}"
        url_names = [
            "archive_url",
            "assignees_url",
            "blobs_url",
            "branches_url",
            "collaborators_url",
            "comments_url",
            "commits_url",
            "compare_url",
            "contents_url",
            "contributors_url",
            "deployments_url",
            "downloads_url",
            "events_url",
            "forks_url",
            "git_commits_url",
            "git_refs_url",
            "git_tags_url",
            "hooks_url",
            "issue_comment_url",
            "issue_events_url",
            "issues_url",
            "keys_url",
            "labels_url",
            "languages_url",
            "merges_url",
            "milestones_url",
            "notifications_url",
            "pulls_url",
            "releases_url",
            "stargazers_url",
            "statuses_url",
            "subscribers_url",
            "subscription_url",
            "tags_url",
            "teams_url",
            "trees_url",
        ]
        body: dict[str, Any] = {n: f"{base}/{n.removesuffix('_url')}" for n in url_names}
        body.update(
            id=repo.id,
            node_id=f"R_{repo.id}",
            name=repo.name,
            full_name=repo.full_name,
            owner=self.user_json(repo.owner),
            private=True,
            html_url=f"{self.root_url}/{repo.full_name}",
            description=None,
            fork=False,
            url=base,
        )
        return body

    def webhook_repo_json(self, repo: Repo) -> dict[str, Any]:
        """The larger repository object of webhook payloads (``repository-webhooks``)."""
        body = self.repo_json(repo)
        host = self.root_url.split("://", 1)[-1]
        body.update(
            archived=False,
            disabled=False,
            clone_url=f"{self.root_url}/{repo.full_name}.git",
            git_url=f"git://{host}/{repo.full_name}.git",
            ssh_url=f"git@{host}:{repo.full_name}.git",
            svn_url=f"{self.root_url}/{repo.full_name}",
            default_branch="main",
            created_at=iso(0),
            updated_at=iso(0),
            pushed_at=iso(0),
            homepage=None,
            language=None,
            license=None,
            mirror_url=None,
            has_downloads=True,
            has_issues=True,
            has_pages=False,
            has_projects=True,
            has_wiki=True,
            forks=0,
            forks_count=0,
            open_issues=0,
            open_issues_count=0,
            size=0,
            stargazers_count=0,
            watchers=0,
            watchers_count=0,
        )
        return body

    def run_json(self, run: Run) -> dict[str, Any]:
        repo = self.repos[run.repo]
        base = f"{self.root_url}{API}/repos/{run.repo}/actions/runs/{run.id}"
        status = self.run_status(run)
        return {
            "id": run.id,
            "name": "CI",
            "node_id": f"WFR_{run.id}",
            "head_branch": "main",
            "head_sha": "0" * 40,
            "path": ".github/workflows/ci.yml",
            "display_title": f"run {run.id}",
            "run_number": run.id,
            "run_attempt": 1,
            "event": "push",
            "status": status,
            "conclusion": "success" if status == "completed" else None,
            "workflow_id": 1,
            "url": base,
            "html_url": f"{self.root_url}/{run.repo}/actions/runs/{run.id}",
            "pull_requests": [],
            "created_at": iso(run.created_at),
            "updated_at": iso(self.run_updated_at(run, status)),
            "jobs_url": f"{base}/jobs",
            "logs_url": f"{base}/logs",
            "check_suite_url": f"{self.root_url}{API}/repos/{run.repo}/check-suites/{run.id}",
            "artifacts_url": f"{base}/artifacts",
            "cancel_url": f"{base}/cancel",
            "rerun_url": f"{base}/rerun",
            "workflow_url": f"{self.root_url}{API}/repos/{run.repo}/actions/workflows/1",
            "head_commit": None,
            "repository": self.repo_json(repo),
            "head_repository": self.repo_json(repo),
        }

    def job_json(self, job: Job) -> dict[str, Any]:
        api = f"{self.root_url}{API}/repos/{job.repo}"
        return {
            "id": job.id,
            "run_id": job.run_id,
            "run_url": f"{api}/actions/runs/{job.run_id}",
            "run_attempt": 1,
            "node_id": f"CR_{job.id}",
            "head_sha": "0" * 40,
            "head_branch": "main",
            "workflow_name": "CI",
            "url": f"{api}/actions/jobs/{job.id}",
            "html_url": f"{self.root_url}/{job.repo}/actions/runs/{job.run_id}/job/{job.id}",
            "status": job.status,
            "conclusion": job.conclusion,
            "created_at": iso(job.created_at),
            "started_at": iso(job.started_at or job.created_at),
            "completed_at": None if job.completed_at is None else iso(job.completed_at),
            "name": job.name,
            "steps": self.steps_json(job),
            "check_run_url": f"{api}/check-runs/{job.id}",
            "labels": list(job.labels),
            "runner_id": job.runner_id,
            "runner_name": job.runner_name,
            "runner_group_id": None if job.runner_id is None else 1,
            "runner_group_name": None if job.runner_id is None else "Default",
        }

    @staticmethod
    def runner_json(runner: Runner) -> dict[str, Any]:
        return {
            "id": runner.id,
            "name": runner.name,
            "os": "Linux",
            "status": runner.status,
            "busy": runner.busy,
            "ephemeral": runner.ephemeral,
            "runner_group_id": 1,
            "labels": [
                {"id": i + 1, "name": label, "type": "custom"}
                for i, label in enumerate(runner.labels)
            ],
        }
