# portflow PowerShell host (placeholder: the real script lands with issue 14).
