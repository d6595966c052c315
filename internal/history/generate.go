package history

//go:generate go run ../../cmd/mkhistory -source ../../configs/history/source -out ../../configs/examples/backtest
