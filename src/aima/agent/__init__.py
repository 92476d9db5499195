"""The operator agent (`aima ask`): a model drives aima through its own operations, with profiles, approvals,
sessions and an audit log. See aima.agent.loop."""
