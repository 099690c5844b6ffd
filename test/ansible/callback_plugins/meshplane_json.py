# A stdout callback that prints the whole run as one JSON document, for the
# playbook tests: {"plays": [{"play": {...}, "tasks": [{"task": {"name"},
# "hosts": {host: result}}]}], "stats": {host: {ok, changed, ...}}}.
# ansible-core ships no JSON callback of its own (ansible.posix has one, but
# a bare ansible-core install lacks it), so the tests bring this one.
from __future__ import annotations

import json

from ansible.parsing.ajson import AnsibleJSONEncoder
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = '''
    name: meshplane_json
    type: stdout
    short_description: the whole run as one JSON document (meshplane tests)
    description: Prints plays, tasks with each host's result, and the recap stats as JSON at the end.
'''


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'meshplane_json'

    def __init__(self, display=None):
        super().__init__(display)
        self.plays = []

    def v2_playbook_on_play_start(self, play):
        self.plays.append({'play': {'name': play.get_name()}, 'tasks': []})

    def _start_task(self, task):
        self.plays[-1]['tasks'].append({'task': {'name': task.get_name()}, 'hosts': {}})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start_task(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start_task(task)

    def _record(self, result, **flags):
        entry = dict(result._result)
        entry.update(flags)
        # A task may report hosts after another task started (free strategy):
        # file the result under the task it belongs to.
        name = result._task.get_name()
        tasks = self.plays[-1]['tasks']
        target = next((t for t in reversed(tasks) if t['task']['name'] == name), None)
        if target is None:
            target = {'task': {'name': name}, 'hosts': {}}
            tasks.append(target)
        target['hosts'][result._host.get_name()] = entry

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True)

    def v2_runner_on_skipped(self, result):
        self._record(result, skipped=True)

    def v2_runner_on_unreachable(self, result):
        self._record(result, unreachable=True)

    def v2_playbook_on_stats(self, stats):
        recap = {}
        for host in sorted(stats.processed.keys()):
            summary = stats.summarize(host)
            recap[host] = {key: summary.get(key, 0) for key in ('ok', 'changed', 'unreachable', 'failures', 'skipped', 'rescued', 'ignored')}
        self._display.display(json.dumps({'plays': self.plays, 'stats': recap}, cls=AnsibleJSONEncoder, indent=2, sort_keys=True))
