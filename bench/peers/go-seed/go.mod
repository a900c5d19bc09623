module jsonbus.bench/goseed

go 1.22
