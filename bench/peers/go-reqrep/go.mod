module jsonbus.bench/goreqrep

go 1.22
