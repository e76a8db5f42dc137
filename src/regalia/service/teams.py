"""Use cases on teams: create, list, add and remove members, change a member's team role.

A team hands its registry roles to every member, so who may change its
members matters as much as who may give registry roles:

- the team's creator becomes its first admin (team role ``admin``);
- only org admins and the team's admins may add members, remove them or
  change their team role; a plain member may only leave the team;
- a team admin cannot remove or demote the team's last admin while other
  members remain (org admins can, since they manage every team anyway);
- every change is recorded in the org's history and in the history of every
  registry where the team holds a role, in the change's own transaction.
"""

from __future__ import annotations

from typing import Any

from regalia.core.names import name_key, validate_entity_name
from regalia.core.roles import OrgRole, TeamRole
from regalia.errors import (
    AlreadyExists,
    Conflict,
    NotFound,
    PermissionDenied,
    TeamNotFound,
    UserNotFound,
)
from regalia.service.base import ServiceBase
from regalia.service.views import Actor, TeamMemberView, TeamView
from regalia.store.models import Team, User
from regalia.store.repo import Repo


class TeamsMixin(ServiceBase):
    # -- lookups every identity use case shares -------------------------------------------
    def _user(self, repo: Repo, actor: Actor, name: str) -> User:
        user = repo.user_by_name(actor.org_id, name)
        if user is None:
            raise UserNotFound(f"user {name!r} not found", user=name)
        return user

    def user_id(self, actor: Actor, name: str) -> int:
        """The id of the organization's user ``name``.

        Raises:
            InvalidName: not a user name; UserNotFound: no such user.
        """
        validate_entity_name(name, "user name")
        return self.db.read(lambda repo: self._user(repo, actor, name).id)

    def _team(self, repo: Repo, actor: Actor, name: str) -> Team:
        team = repo.team_by_name(actor.org_id, name)
        if team is None:
            raise TeamNotFound(f"team {name!r} not found", team=name)
        return team

    def _team_view(self, repo: Repo, team: Team) -> TeamView:
        members = [TeamMemberView(n, r) for n, r in repo.team_members(team.id)]
        return TeamView(id=team.id, name=team.name, members=members)

    # -- reads ------------------------------------------------------------------------------
    def list_teams(self, actor: Actor) -> list[TeamView]:
        """Every team of the organization with its members and their team roles
        (team membership is visible to the whole organization, as in user listings)."""
        return self.db.read(lambda r: [self._team_view(r, t) for t in r.teams(actor.org_id)])

    def get_team(self, actor: Actor, name: str) -> TeamView:
        """One team with its members and their team roles. Raises TeamNotFound."""
        return self.db.read(lambda r: self._team_view(r, self._team(r, actor, name)))

    # -- changes ----------------------------------------------------------------------------
    def create_team(self, actor: Actor, name: str, *, exist_ok: bool = False) -> TeamView:
        """Create a team (org role member or admin); its creator becomes its admin.

        Raises InvalidName, PermissionDenied, AlreadyExists (a team or user has that
        name; with ``exist_ok`` an existing team is returned instead)."""
        validate_entity_name(name, "team name")
        if actor.org_role not in (OrgRole.ADMIN, OrgRole.MEMBER):
            raise PermissionDenied(
                "you need the organization role 'member' to create teams", required_role="member"
            )

        def fn(repo: Repo) -> TeamView:
            found = repo.team_by_name(actor.org_id, name)
            if found is not None or repo.user_by_name(actor.org_id, name) is not None:
                if exist_ok and found is not None:
                    return self._team_view(repo, found)
                raise AlreadyExists(f"a team or user named {name!r} already exists", name=name)
            team = repo.add(
                Team(org_id=actor.org_id, name=name, name_key=name_key(name), created_at=self.now())
            )
            repo.add_team_member(team.id, actor.user_id, TeamRole.ADMIN.value)
            self._record_team_change(
                repo, actor, team, actor.name, "team_add", team_role=TeamRole.ADMIN.value
            )
            return self._team_view(repo, team)

        return self.db.write(fn)

    def add_team_member(
        self, actor: Actor, team_name: str, user_name: str, *, role: str | None = None
    ) -> TeamView:
        """Add USER to TEAM with the team role ``role`` (default 'member'); for a user
        who is a member already, an explicit ``role`` changes theirs and None keeps it.
        Org admins and team admins only.

        Raises PermissionDenied (naming the role needed), TeamNotFound, UserNotFound,
        InvalidRequest (an unknown role), Conflict (demoting the team's last admin)."""
        wanted = TeamRole.parse(role) if role is not None else None

        def fn(repo: Repo) -> TeamView:
            team = self._locked_team(repo, actor, team_name)
            self._require_team_admin(repo, actor, team, "add members")
            user = self._user(repo, actor, user_name)
            current = repo.team_role(team.id, user.id)
            if current is None:
                new = (wanted or TeamRole.MEMBER).value
                repo.add_team_member(team.id, user.id, new)
                self._record_team_change(repo, actor, team, user.name, "team_add", team_role=new)
            elif wanted is not None and wanted.value != current:
                self._change_role(repo, actor, team, user, current, wanted.value)
            return self._team_view(repo, team)

        return self.db.write(fn)

    def set_team_role(self, actor: Actor, team_name: str, user_name: str, role: str) -> TeamView:
        """Make a member of TEAM a team 'admin' or a plain 'member'. Org admins and
        team admins only.

        Raises PermissionDenied, TeamNotFound, UserNotFound, NotFound (not a member),
        InvalidRequest (an unknown role), Conflict (demoting the team's last admin)."""
        wanted = TeamRole.parse(role)

        def fn(repo: Repo) -> TeamView:
            team = self._locked_team(repo, actor, team_name)
            self._require_team_admin(repo, actor, team, "change team roles")
            user = self._user(repo, actor, user_name)
            current = self._member_role(repo, team, user)
            if current != wanted.value:
                self._change_role(repo, actor, team, user, current, wanted.value)
            return self._team_view(repo, team)

        return self.db.write(fn)

    def remove_team_member(self, actor: Actor, team_name: str, user_name: str) -> TeamView:
        """Take USER out of TEAM (and so out of the team's registry roles). Org admins
        and team admins may remove anyone; every member may leave.

        Removing a user who is not a member changes nothing (so a retry is safe).
        Raises PermissionDenied, TeamNotFound, UserNotFound, Conflict (the team's
        last admin, while other members remain)."""

        def fn(repo: Repo) -> TeamView:
            team = self._locked_team(repo, actor, team_name)
            user = self._user(repo, actor, user_name)
            if user.id != actor.user_id:  # leaving a team hands nothing out
                self._require_team_admin(repo, actor, team, "remove members")
            current = repo.team_role(team.id, user.id, lock=True)
            if current is None:  # removed already (a retried DELETE): nothing to do
                return self._team_view(repo, team)
            if current == TeamRole.ADMIN.value and len(repo.team_members(team.id)) > 1:
                self._keep_an_admin(repo, actor, team, user, "remove")
            repo.remove_team_member(team.id, user.id)
            self._record_team_change(
                repo, actor, team, user.name, "team_remove", previous_team_role=current
            )
            return self._team_view(repo, team)

        return self.db.write(fn)

    # -- rules and history ------------------------------------------------------------------
    def _locked_team(self, repo: Repo, actor: Actor, name: str) -> Team:
        team = self._team(repo, actor, name)
        repo.lock_team(team.id)
        return team

    def _require_team_admin(self, repo: Repo, actor: Actor, team: Team, doing: str) -> None:
        """Org admins manage every team; otherwise the caller must be a team admin
        (read from the database, not from the caller's cached identity)."""
        if actor.is_org_admin:
            return
        mine = repo.team_role(team.id, actor.user_id)
        if mine != TeamRole.ADMIN.value:
            raise PermissionDenied(
                f"you need the team role 'admin' in team {team.name!r} (or the organization "
                f"role 'admin') to {doing} (your team role: {mine or 'none'})",
                required_role="team admin",
                team=team.name,
                role=mine or "none",
            )

    def _member_role(self, repo: Repo, team: Team, user: User) -> str:
        current = repo.team_role(team.id, user.id, lock=True)
        if current is None:
            raise NotFound(
                f"user {user.name!r} is not a member of team {team.name!r}",
                team=team.name,
                user=user.name,
            )
        return current

    def _keep_an_admin(self, repo: Repo, actor: Actor, team: Team, user: User, doing: str) -> None:
        """A team admin may not leave the team without an admin while it has other
        members; org admins may (they manage every team)."""
        if actor.is_org_admin or repo.team_admin_count(team.id) > 1:
            return
        raise Conflict(
            f"cannot {doing} {user.name!r}: they are the last admin of team {team.name!r}; "
            "make another member an admin first (or ask an org admin)",
            team=team.name,
            user=user.name,
        )

    def _change_role(
        self, repo: Repo, actor: Actor, team: Team, user: User, current: str, new: str
    ) -> None:
        if current == TeamRole.ADMIN.value:
            self._keep_an_admin(repo, actor, team, user, "demote")
        repo.set_team_role(team.id, user.id, new)
        self._record_team_change(
            repo, actor, team, user.name, "team_role", team_role=new, previous_team_role=current
        )

    def _record_team_change(
        self, repo: Repo, actor: Actor, team: Team, user: str, change: str, **details: Any
    ) -> None:
        """One history row for the organization, and one in every registry where the
        team holds a role (it hands that role to, or takes it from, ``user``)."""
        self._record(
            repo, actor, "role_change", None, team=team.name, user=user, change=change, **details
        )
        for registry_id, registry_role in repo.team_registry_roles(team.id):
            self._record(
                repo,
                actor,
                "role_change",
                None,
                registry_id=registry_id,
                team=team.name,
                user=user,
                change=change,
                registry_role=registry_role,
                **details,
            )
