"""JSON shapes of the GitLab simulator: GitLab's Grape entities, the fields the sim knows.

``Entities::Ci::Job``, ``JobBasicWithProject``, ``Entities::Ci::Runner`` and
``RunnerDetails`` (``lib/api/entities/ci/*.rb``); the conformance test checks them against
GitLab's OpenAPI description.
"""

from __future__ import annotations

from tests.forgesim.gitlab.model import JSON, Group, Job, Project, Runner, iso, now_utc


def queued_duration(job: Job) -> float | None:
    """``Ci::Build#queued_duration``: from queueing until started, or until now while
    pending (so a pending job's entity changes on every read, as on GitLab)."""
    if job.status == "pending":
        return round((now_utc() - job.created_at).total_seconds(), 3)
    if job.started_at is not None:
        return round((job.started_at - job.created_at).total_seconds(), 3)
    return None


class Entities:
    """Mixin of :class:`~tests.forgesim.gitlab.state.GitLabSim`: builds the entities."""

    groups: dict[int, Group]
    projects: dict[int, Project]
    jobs: dict[int, Job]
    runners: dict[int, Runner]

    def project_entity(self, project: Project) -> JSON:
        return {
            "id": project.id,
            "name": project.path,
            "path": project.path,
            "path_with_namespace": project.path_with_namespace,
            "name_with_namespace": project.path_with_namespace.replace("/", " / "),
            "description": "",
            "created_at": iso(project.created_at),
            "namespace": {
                "id": project.group_id or 1,
                "full_path": project.path_with_namespace.rsplit("/", 1)[0],
            },
            "web_url": f"http://gitlab.sim/{project.path_with_namespace}",
        }

    def group_entity(self, group: Group) -> JSON:
        return {
            "id": group.id,
            "name": group.path,
            "path": group.path,
            "full_path": group.full_path,
            "parent_id": group.parent_id,
            "web_url": f"http://gitlab.sim/groups/{group.full_path}",
        }

    def pipeline_entity(self, job: Job) -> JSON:
        return {
            "id": job.pipeline_id,
            "iid": job.pipeline_id,
            "project_id": job.project_id,
            "sha": "0" * 40,
            "ref": "main",
            "status": job.status,
            "source": "push",
            "created_at": iso(job.created_at),
            "updated_at": iso(job.created_at),
            "web_url": f"http://gitlab.sim/-/pipelines/{job.pipeline_id}",
        }

    def job_entity(self, job: Job, base: str) -> JSON:
        """``Entities::Ci::Job`` (the fields the sim knows)."""
        runner = self.runners.get(job.runner_id) if job.runner_id else None
        ended = job.finished_at or (now_utc() if job.started_at else None)
        duration = (ended - job.started_at).total_seconds() if job.started_at and ended else None
        return {
            "id": job.id,
            "status": job.status,
            "stage": "test",
            "name": job.name,
            "ref": "main",
            "tag": False,
            "coverage": None,
            "allow_failure": False,
            "created_at": iso(job.created_at),
            "started_at": iso(job.started_at),
            "finished_at": iso(job.finished_at),
            "erased_at": None,
            "duration": duration,
            "queued_duration": queued_duration(job),
            "user": {"id": 1, "username": "sim"},
            "commit": {"id": "0" * 40},
            "pipeline": self.pipeline_entity(job),
            "web_url": f"{base}/-/jobs/{job.id}",
            "artifacts": [],
            "runner": self.runner_entity(runner) if runner else None,
            "artifacts_expire_at": None,
            "archived": False,
            "tag_list": list(job.tags),
        }

    def job_with_project(self, job: Job, base: str) -> JSON:
        """``Entities::Ci::JobBasicWithProject`` for ``/runners/:id/jobs``."""
        entity = {
            k: v
            for k, v in self.job_entity(job, base).items()
            if k not in {"runner", "artifacts", "artifacts_expire_at", "archived", "tag_list"}
        }
        project = self.projects[job.project_id]
        entity["project"] = {
            k: v
            for k, v in self.project_entity(project).items()
            if k
            in {
                "id",
                "description",
                "name",
                "name_with_namespace",
                "path",
                "path_with_namespace",
                "created_at",
            }
        }
        return entity

    def runner_busy(self, runner: Runner) -> bool:
        return any(j.runner_id == runner.id and j.status == "running" for j in self.jobs.values())

    def runner_entity(self, runner: Runner) -> JSON:
        online = (
            runner.contacted_at is not None
            and (now_utc() - runner.contacted_at).total_seconds() < 7200
        )
        status = (
            "online"
            if online
            else ("never_contacted" if runner.contacted_at is None else "offline")
        )
        return {
            "id": runner.id,
            "description": runner.description,
            "ip_address": None,
            "active": not runner.paused,
            "paused": runner.paused,
            "is_shared": runner.runner_type == "instance_type",
            "runner_type": runner.runner_type,
            "name": None,
            "online": online,
            "created_by": {"id": 1, "username": "sim", "name": "Sim", "state": "active"},
            "created_at": iso(runner.created_at),
            "status": status,
            "job_execution_status": "active" if self.runner_busy(runner) else "idle",
        }

    def runner_details(self, runner: Runner) -> JSON:
        projects = [self.projects[runner.project_id]] if runner.project_id in self.projects else []
        groups = [self.groups[runner.group_id]] if runner.group_id in self.groups else []
        return {
            **self.runner_entity(runner),
            "tag_list": list(runner.tags),
            "run_untagged": runner.run_untagged,
            "locked": False,
            "maximum_timeout": None,
            "access_level": "not_protected",
            "version": None,
            "revision": None,
            "platform": None,
            "architecture": None,
            "contacted_at": iso(runner.contacted_at),
            "maintenance_note": None,
            "projects": [self.project_entity(p) for p in projects],
            "groups": [
                {"id": g.id, "name": g.path, "web_url": self.group_entity(g)["web_url"]}
                for g in groups
            ],
        }
