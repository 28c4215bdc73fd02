"""The local provider asks a starting kernel for kernel_info until it answers (on shell and control,
every 0.05–0.2 s). A starting ipykernel answers every one of those probes once it is up; only the first
answer may reach clients: the later ones made a fresh kernel blink busy/idle in every client and in the
kernel's model after it was reported ready; and the kernel's own 'starting', published before it
answered but seen after, put the model back to 'starting'."""

from __future__ import annotations

from kernel_ws import connect, running_kernel


async def test_only_the_first_answered_probe_reaches_clients(himalia_server):
    async with himalia_server() as server, running_kernel(server) as kernel:
        async with connect(server, kernel["id"]) as ws:
            # the shell channel is first in, first out: once this request is answered, every probe
            # sent on shell before it has been answered too (control ones are answered at once)
            done = await ws.execute("pass")
            assert done.reply["content"]["status"] == "ok"
        r = await server.get(f"/api/kernels/{kernel['id']}/outputs?since=0")
        assert r.status == 200
        logged = (await r.json())["messages"]
        others = [(m["parent_header"].get("msg_id"), m["content"]["execution_state"]) for m in logged
                  if m["header"]["msg_type"] == "status" and m["parent_header"].get("msg_id") != done.msg_id]
        probes = {msg_id for msg_id, _ in others if msg_id}
        assert len(probes) <= 1, f"statuses of {len(probes)} start-up probes reached clients: {others}"
        # the first answered probe's 'busy' may have been published before iopub's subscription took
        assert [state for msg_id, state in others if msg_id] in ([], ["idle"], ["busy", "idle"])
        states = [m["content"]["execution_state"] for m in logged if m["header"]["msg_type"] == "status"]
        assert "starting" not in states[states.index("idle"):], f"the kernel went back to starting: {states}"
