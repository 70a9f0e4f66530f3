module kmcp.local/loadgen

go 1.26
