package vhostuser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// Serve runs the protocol on conn until the front-end closes it or sends a
// message that cannot be trusted; then the device is reset so the next
// connection starts clean. The connection is closed on return.
func (d *Device) Serve(conn *net.UnixConn) error {
	defer conn.Close()
	d.mu.Lock()
	d.conn = conn
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.conn = nil
		d.mu.Unlock()
	}()
	d.setConnected()
	d.log.Info("front-end connected")
	defer d.Disconnect()
	r := NewReader(conn)
	for {
		m, err := r.Read()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) {
				d.log.Info("front-end disconnected")
				return nil
			}
			d.Counters.BadMessages.Add(1)
			d.log.WithError(err).Warn("closing connection: unreadable message")
			d.setErr("connection closed: unreadable message: %v", err)
			return err
		}
		reply, herr := d.Handle(m)
		if herr != nil {
			fatal := errors.Is(herr, ErrBadMessage)
			d.log.WithError(herr).WithField("request", m.Request.String()).Warn("refused vhost-user request")
			if m.NeedReply() && d.ackNegotiated() && !handlers[m.Request].reply {
				if err := WriteReply(conn, m.Request, U64(1).Bytes()); err != nil {
					d.setErr("connection closed: reply to %s failed: %v", m.Request, err)
					return err
				}
			}
			if fatal {
				d.setErr("connection closed: %s refused: %v", m.Request, herr)
				return herr
			}
			continue
		}
		switch {
		case reply != nil:
			err = WriteReply(conn, m.Request, reply)
		case m.NeedReply() && d.ackNegotiated():
			err = WriteReply(conn, m.Request, U64(0).Bytes())
		}
		if err != nil {
			d.log.WithError(err).Warn("closing connection: reply failed")
			d.setErr("connection closed: reply to %s failed: %v", m.Request, err)
			return err
		}
	}
}

// Abort drops the current connection (after the data plane stopped the
// device for a fault); the front-end reconnects and sets it up afresh.
func (d *Device) Abort(reason any) {
	d.mu.Lock()
	c := d.conn
	d.mu.Unlock()
	if c != nil {
		d.log.WithField("reason", reason).Warn("dropping the front-end connection")
		d.setErr("connection dropped after a data-plane fault: %v", reason)
		c.Close()
	}
}

func (d *Device) ackNegotiated() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.protoAcked&(1<<ProtocolReplyAck) != 0
}

// Server listens on a unix socket for one front-end at a time (QEMU
// "-chardev socket,path=..." without server=on, DPDK virtio_user default).
type Server struct {
	path string
	dev  *Device
	ln   *net.UnixListener
	log  *logrus.Entry

	mu     sync.Mutex
	active *net.UnixConn
	closed bool
	done   chan struct{}
	conns  sync.WaitGroup // Serve goroutines; Close waits for them
}

// SocketOptions set the owner and mode of a server socket.
type SocketOptions struct {
	Mode os.FileMode // 0 means 0660
	UID  int         // -1 leaves the owner
	GID  int         // -1 leaves the group
}

// Listen creates the socket at path, replacing a stale socket file left by a
// crashed run but refusing to take over one that a live process serves.
func Listen(path string, opts SocketOptions, dev *Device) (*Server, error) {
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(true)
	mode := opts.Mode
	if mode == 0 {
		mode = 0o660
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, err
	}
	if opts.UID >= 0 || opts.GID >= 0 {
		if err := os.Chown(path, opts.UID, opts.GID); err != nil {
			ln.Close()
			return nil, err
		}
	}
	s := &Server{path: path, dev: dev, ln: ln, log: dev.log.WithField("socket", path), done: make(chan struct{})}
	go s.acceptLoop()
	return s, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, 200*time.Millisecond)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by another process", path)
	}
	return os.Remove(path)
}

func (s *Server) acceptLoop() {
	defer close(s.done)
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.WithError(err).Warn("accept failed")
			time.Sleep(100 * time.Millisecond)
			continue
		}
		// A guest that reconnects at once may find its old connection still
		// being torn down: give that a moment before calling it a second
		// front-end.
		var busy, closed bool
		for wait := 0; ; wait++ {
			s.mu.Lock()
			busy, closed = s.active != nil, s.closed
			if !busy && !closed {
				s.active = conn
			}
			s.mu.Unlock()
			if !busy || closed || wait == 200 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if busy || closed {
			// One front-end per device: a second one would fight over the rings.
			s.log.Warn("refusing a second front-end connection")
			conn.Close()
			continue
		}
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			s.dev.Serve(conn)
			s.mu.Lock()
			s.active = nil
			s.mu.Unlock()
		}()
	}
}

// Close stops listening, drops the connection and removes the socket.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.active != nil {
		s.active.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	<-s.done
	s.conns.Wait() // the device is disconnected before Close returns
	return err
}

// Client connects to a front-end that listens (QEMU "server=on", DPDK
// virtio_user "server=1", OpenStack's vhostuser_mode=server) and reconnects
// with bounded backoff whenever the connection is absent or lost.
type Client struct {
	path   string
	dev    *Device
	log    *logrus.Entry
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	conn   *net.UnixConn
}

// Reconnect backoff bounds.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Dial starts connecting to path in the background.
func Dial(path string, dev *Device) *Client {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{path: path, dev: dev, log: dev.log.WithField("socket", path), cancel: cancel, done: make(chan struct{})}
	go c.run(ctx)
	return c
}

func (c *Client) run(ctx context.Context) {
	defer close(c.done)
	backoff := minBackoff
	logged := false
	for ctx.Err() == nil {
		conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: c.path, Net: "unix"})
		if err != nil {
			if !logged {
				c.log.WithError(err).Info("waiting for the front-end to listen")
				c.dev.setErr("cannot reach the front-end: %v", err)
				logged = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		backoff, logged = minBackoff, false
		c.mu.Lock()
		c.conn = conn
		c.mu.Unlock()
		if ctx.Err() != nil {
			conn.Close()
			return
		}
		c.dev.Serve(conn)
		c.mu.Lock()
		c.conn = nil
		c.mu.Unlock()
		// Do not hammer a front-end that keeps dropping us.
		select {
		case <-ctx.Done():
			return
		case <-time.After(minBackoff):
		}
	}
}

// Close stops reconnecting and drops the connection.
func (c *Client) Close() error {
	c.cancel()
	c.mu.Lock()
	if c.conn != nil {
		c.conn.Close()
	}
	c.mu.Unlock()
	<-c.done
	return nil
}
