//go:build !linux

package redistest

import "syscall"

func serverAttr() *syscall.SysProcAttr { return nil }
