//go:build !linux

package main

import "syscall"

// childAttr: outside Linux a child is not tied to the coordinator's life;
// the coordinator stops its children when it ends.
func childAttr() *syscall.SysProcAttr { return nil }
