// pgstack-step: what each migration command resource of a `pulumi up` runs
// (through infra/bin/pgstack-step). Starting Node.js and loading the CLI costs
// several times what Pulumi itself charges for a step, so the first step of an
// update starts one resident pgstack process (`pgstack session`) and every
// step hands its command line to it over a Unix socket; this client starts in
// about a millisecond. The resident belongs to one update: it is found by the
// update's command provider and engine processes (pid and start time), the
// working directory and the database URL, so another update, another stack or
// another database never reaches it; it lives in a 0700 directory and asks for
// a token only a step of that update can compute; it exits as soon as the
// update's processes are gone (see infra/core/session).
//
// Anything unusual (no /proc, no command provider above us, no DATABASE_URL,
// a session that cannot start) runs `node infra/bin/pgstack.js` instead, so a
// step never depends on the session for being correct, only for being fast.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procRef is one process: pid and start time (clock ticks since boot), so a reused pid is not mistaken for it.
type procRef struct {
	pid   int
	start string
}

func (p procRef) String() string { return strconv.Itoa(p.pid) + ":" + p.start }

// readProc returns the command name, parent pid and start time of pid, from /proc/<pid>/stat.
func readProc(pid int) (comm string, ppid int, start string, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, "", err
	}
	text := string(data)
	open, close := strings.IndexByte(text, '('), strings.LastIndexByte(text, ')')
	if open < 0 || close < open {
		return "", 0, "", errors.New("unreadable stat")
	}
	fields := strings.Fields(text[close+1:])
	// fields[0] is the state (field 3); ppid is field 4, starttime field 22.
	if len(fields) < 20 {
		return "", 0, "", errors.New("unreadable stat")
	}
	ppid, err = strconv.Atoi(fields[1])
	return text[open+1 : close], ppid, fields[19], err
}

// anchor finds the command provider running this step (pulumi-resource-command,
// its name cut to 15 characters by the kernel) and the engine above it.
func anchor() (engine, provider procRef, ok bool) {
	pid := os.Getppid()
	for depth := 0; depth < 8 && pid > 1; depth++ {
		comm, ppid, start, err := readProc(pid)
		if err != nil {
			return
		}
		if strings.HasPrefix(comm, "pulumi-resource") {
			_, _, estart, err := readProc(ppid)
			if err != nil || ppid <= 1 {
				return
			}
			return procRef{ppid, estart}, procRef{pid, start}, true
		}
		pid = ppid
	}
	return
}

func digest(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(sum[:])
}

// sessionDir is the per-user 0700 directory of the sessions' sockets; it must be ours and closed to others.
func sessionDir() (string, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "pgstack-"+strconv.Itoa(os.Getuid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	info, err := os.Lstat(dir)
	if err != nil {
		return "", err
	}
	st, _ := info.Sys().(*syscall.Stat_t)
	if !info.IsDir() || info.Mode().Perm() != 0o700 || st == nil || int(st.Uid) != os.Getuid() {
		return "", errors.New(dir + " is not a 0700 directory of this user")
	}
	return dir, nil
}

type frame struct {
	Out  *string `json:"o,omitempty"`
	Err  *string `json:"e,omitempty"`
	Exit *int    `json:"x,omitempty"`
}

func main() {
	exe, err := os.Executable()
	if err != nil {
		fail("cannot locate itself: " + err.Error())
	}
	// The binary lives in <root>/.pgstack/cache/.
	root := filepath.Dir(filepath.Dir(filepath.Dir(exe)))
	args := os.Args[1:]
	code, inUpdate, err := viaSession(root, args)
	if err == nil {
		os.Exit(code)
	}
	// Inside an update the session was expected: say why this step runs without it.
	if inUpdate || os.Getenv("PGSTACK_STEP_DEBUG") != "" {
		fmt.Fprintf(os.Stderr, "pgstack-step: no deploy session (%v); running the CLI directly\n", err)
	}
	direct(root, args)
}

// direct replaces this process with `node infra/bin/pgstack.js <args>`.
func direct(root string, args []string) {
	node, err := exec.LookPath("node")
	if err != nil {
		fail("node is not on PATH")
	}
	argv := append([]string{"node", filepath.Join(root, "infra", "bin", "pgstack.js")}, args...)
	fail(syscall.Exec(node, argv, os.Environ()).Error())
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "pgstack-step: "+message)
	os.Exit(1)
}

// viaSession runs args in this update's session, starting it when there is none.
// An error means nothing was run, and the caller runs the CLI directly;
// inUpdate says whether the step runs inside a pulumi update.
func viaSession(root string, args []string) (code int, inUpdate bool, err error) {
	code, err = stepViaSession(root, args, &inUpdate)
	return
}

func stepViaSession(root string, args []string, inUpdate *bool) (int, error) {
	if os.Getenv("PGSTACK_NO_SESSION") == "1" {
		return 0, errors.New("PGSTACK_NO_SESSION=1")
	}
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		return 0, errors.New("no DATABASE_URL")
	}
	engine, provider, ok := anchor()
	if !ok {
		return 0, errors.New("not run by the command provider of a pulumi update")
	}
	*inUpdate = true
	wd, err := os.Getwd()
	if err != nil {
		return 0, err
	}
	if wd, err = filepath.EvalSymlinks(wd); err != nil {
		return 0, err
	}
	dir, err := sessionDir()
	if err != nil {
		return 0, err
	}
	// Keep in step with sessionIdentity in infra/core/session/identity.ts.
	material := []string{"pgstack-session-v1", engine.String(), provider.String(), wd, url}
	socket := filepath.Join(dir, digest(append([]string{"socket"}, material...)...)[:32]+".sock")
	token := digest(append([]string{"token"}, material...)...)

	conn, err := net.Dial("unix", socket)
	if err != nil {
		if conn, err = start(root, socket, engine, provider); err != nil {
			return 0, err
		}
	}
	defer conn.Close()
	request, _ := json.Marshal(map[string]any{"token": token, "argv": args})
	if _, err := conn.Write(append(request, '\n')); err != nil {
		return 0, err
	}
	// From here on the step is the session's: if the session ends before it
	// answers (the update was killed, and the session with it), the step fails;
	// it never runs again by itself, outliving the update.
	reader := bufio.NewReaderSize(conn, 64*1024)
	for {
		line, err := reader.ReadBytes('\n')
		if err != nil {
			fail("the deploy session ended before this step finished (the update was interrupted, or the session process died); the database rolled back what the step had not committed")
		}
		var f frame
		if json.Unmarshal(line, &f) != nil {
			fail("unreadable answer from the deploy session")
		}
		switch {
		case f.Out != nil:
			os.Stdout.WriteString(*f.Out)
		case f.Err != nil:
			os.Stderr.WriteString(*f.Err)
		case f.Exit != nil:
			return *f.Exit, nil
		}
	}
}

// start launches the resident session (detached from this step's output and
// process group, so the step can end while it lives on) and waits until it accepts.
func start(root, socket string, engine, provider procRef) (net.Conn, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(node, filepath.Join(root, "infra", "bin", "pgstack.js"), "session")
	cmd.Env = append(os.Environ(), "PGSTACK_SESSION_SOCKET="+socket, "PGSTACK_SESSION_ANCHOR="+engine.String()+","+provider.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for delay := time.Millisecond; time.Now().Before(deadline); {
		if conn, err := net.Dial("unix", socket); err == nil {
			return conn, nil
		}
		select {
		case <-exited:
			return nil, errors.New("the session process exited at start")
		case <-time.After(delay):
		}
		if delay < 20*time.Millisecond {
			delay *= 2
		}
	}
	cmd.Process.Kill()
	return nil, errors.New("the session process did not start in 30 s")
}
