package redistest

import "syscall"

// serverAttr makes a redis-server die with the test binary that started
// it, even when the binary panics or is killed before its cleanup runs.
func serverAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
