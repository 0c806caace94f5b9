// pgstack-step: what each migration command resource of a `pulumi up` runs
// (through infra/bin/pgstack-step). The update's own Pulumi program serves
// its migration steps (infra/cli/session.ts): it already has the database URL
// and pgstack loaded, so a step only hands its command line over a Unix socket
// and relays the answer, starting in about a millisecond instead of Node.js's
// 65 ms and the CLI's load. The step carries no database URL.
//
// The socket and its token are found by the stack ($PGSTACK_STACK) and the
// project folder (the step's working directory, physical path), in this
// user's 0700 directory; keep in step with sessionPaths in
// infra/core/session/identity.ts and with infra/bin/step-client.js, the
// same client for machines without Go.
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
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

type frame struct {
	Out  *string `json:"o,omitempty"`
	Err  *string `json:"e,omitempty"`
	Exit *int    `json:"x,omitempty"`
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "pgstack-step: "+message)
	os.Exit(1)
}

// sessionDir is the per-user 0700 directory of the sessions' sockets; it must be ours and closed to others.
func sessionDir() (string, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" {
		base = os.TempDir()
	}
	dir := filepath.Join(base, "pgstack-"+strconv.Itoa(os.Getuid()))
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

func main() {
	args := os.Args[1:]
	if len(args) == 1 && args[0] == "--version" {
		fmt.Println("pgstack-step")
		return
	}
	stack := os.Getenv("PGSTACK_STACK")
	wd, err := os.Getwd()
	if err == nil {
		wd, err = filepath.EvalSymlinks(wd)
	}
	if stack == "" || err != nil {
		fail("a migration step runs inside `pulumi up` of its stack ($PGSTACK_STACK is not set); to apply a migration by hand run `node infra/bin/pgstack.js apply <name>`")
	}
	dir, err := sessionDir()
	if err != nil {
		fail("no deploy session for stack '" + stack + "': " + err.Error())
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{"pgstack-deploy-v2", wd, stack}, "\n")))
	name := hex.EncodeToString(sum[:])[:32]
	token, err := os.ReadFile(filepath.Join(dir, name+".token"))
	if err != nil {
		fail("no deploy session for stack '" + stack + "' in " + wd + ": the migration steps run only inside `pulumi up`, whose program serves them")
	}
	conn, err := net.Dial("unix", filepath.Join(dir, name+".sock"))
	if err != nil {
		fail("no deploy session for stack '" + stack + "' in " + wd + " (" + err.Error() + "): the update's program is gone; run `pulumi up` again")
	}
	defer conn.Close()
	request, _ := json.Marshal(map[string]any{"token": strings.TrimSpace(string(token)), "argv": args})
	if _, err := conn.Write(append(request, '\n')); err != nil {
		fail("the deploy session refused the step: " + err.Error())
	}
	reader := bufio.NewReaderSize(conn, 64*1024)
	for {
		line, err := reader.ReadBytes('\n')
		if err != nil {
			fail("the deploy session ended before this step finished (the update was interrupted); the database rolled back what the step had not committed")
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
			os.Exit(*f.Exit)
		}
	}
}
