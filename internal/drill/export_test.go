package drill

import "time"

// SetLockWait sets the sums' lock_wait_timeout for a test and returns the
// function that restores it.
func SetLockWait(d time.Duration) (restore func()) {
	old := lockWait
	lockWait = d
	return func() { lockWait = old }
}
