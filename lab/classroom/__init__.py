"""A classroom on one server: one local lab per trainee, made from one template.

- ``roster``: trainee names, the subnet pool and each trainee's lab file (``class.json``
  records who got which subnet, so a re-run gives everyone the same lab);
- ``isolation``: the iptables chains that keep a lab to its own bridge and the mirror;
- ``access``: per trainee a host account that can only jump to its own nodes, the class's
  sshd, the key pair and the access sheet;
- ``memory``: RSS/PSS of a lab's processes; ``status``: the instructor's table, JSON, HTML;
- ``runner``: ``class.up`` / ``class.destroy`` / ``class.status`` composed from the above,
  each lab brought up by ``inv lab.up`` in its own process (one lab's failure or output
  never reaches another's).

The class sits above the labs: it imports ``lab.workflow`` for a lab's progress and
nothing of the local provider; nothing below imports it.
"""
