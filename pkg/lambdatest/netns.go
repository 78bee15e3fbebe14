package lambdatest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// netns is an environment's network namespace. The harness reaches into it
// without any process inside: a socket belongs for good to the namespace
// of the thread that created it, so a goroutine locked to its thread
// enters the namespace (setns), creates the socket and comes back. Go
// starts new threads from a clean template thread when the current one is
// locked, so no other goroutine ever runs in the namespace.
type netns struct{ f *os.File }

func openNetns(pid int) (*netns, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, fmt.Errorf("open network namespace of %d: %w", pid, err)
	}
	return &netns{f: f}, nil
}

func (n *netns) close() { n.f.Close() }

// do runs fn on a thread inside the namespace.
func (n *netns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer own.Close()
		if err := unix.Setns(int(n.f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
			// Still inside: the thread ends with this goroutine, as
			// Go does for a goroutine that exits locked.
			errc <- errors.Join(ferr, fmt.Errorf("leave network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// dial connects to addr inside the namespace.
func (n *netns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// listen listens on addr inside the namespace.
func (n *netns) listen(addr string) (net.Listener, error) {
	var l net.Listener
	err := n.do(func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// forward serves l (inside an environment) by relaying each connection to
// the same address outside, until l is closed.
func forward(l net.Listener, hostAddr string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go relay(c, hostAddr)
	}
}

func relay(in net.Conn, hostAddr string) {
	out, err := net.DialTimeout("tcp", hostAddr, 10*time.Second)
	if err != nil {
		in.Close()
		return
	}
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	wg.Add(2)
	go pipe(out, in)
	go pipe(in, out)
	wg.Wait()
	in.Close()
	out.Close()
}
