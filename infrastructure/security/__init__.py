"""Who may call what: principals, bearer-token verification, scopes and graph access."""
