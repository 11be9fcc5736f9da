package main

import "syscall"

// childAttr makes a child (a redis-server or a worker) die with the
// coordinator, even when the coordinator is killed before it cleans up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
