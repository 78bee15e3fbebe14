package dynamolocal_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"gitlab-serverless-runner/pkg/dynamolocal"
)

// helperEnv makes the test binary act as a program that starts DynamoDB
// Local, prints java's pid and then waits to be killed.
const helperEnv = "DYNAMOLOCAL_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		srv, err := dynamolocal.Start(context.Background(), dynamolocal.Options{})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println(srv.PID())
		select {}
	}
	os.Exit(m.Run())
}

func createTable(t *testing.T, c *dynamodb.Client, name string) {
	t.Helper()
	_, err := c.CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		BillingMode:          ddbtypes.BillingModePayPerRequest,
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: ddbtypes.KeyTypeHash}},
	})
	if err != nil {
		t.Fatalf("CreateTable(%s): %v", name, err)
	}
}

func tableNames(t *testing.T, c *dynamodb.Client) []string {
	t.Helper()
	out, err := c.ListTables(context.Background(), &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatalf("ListTables: %v", err)
	}
	return out.TableNames
}

// gone waits until the process has exited; a process that never goes
// fails the test when the test binary's own -timeout ends it.
func gone(pid int) bool {
	for {
		if err := syscall.Kill(pid, 0); err != nil {
			return true
		}
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && stat[i+2] == 'Z' {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStartStop(t *testing.T) {
	tests := []struct {
		name    string
		dataDir bool
		port    bool
	}{
		{name: "in memory on a free port"},
		{name: "on disk on a chosen port", dataDir: true, port: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts dynamolocal.Options
			if tt.dataDir {
				opts.DataDir = filepath.Join(t.TempDir(), "db")
			}
			if tt.port {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				opts.Port = l.Addr().(*net.TCPAddr).Port
				l.Close()
			}
			srv, err := dynamolocal.Start(context.Background(), opts)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			t.Cleanup(srv.Stop)
			if tt.port {
				if got, want := srv.Endpoint(), "http://127.0.0.1:"+strconv.Itoa(opts.Port); got != want {
					t.Errorf("Endpoint() = %q, want %q", got, want)
				}
			}
			createTable(t, srv.Client(), "things")
			if got := tableNames(t, srv.Client()); len(got) != 1 || got[0] != "things" {
				t.Errorf("tables = %v, want [things]", got)
			}
			if tt.dataDir {
				if _, err := os.Stat(filepath.Join(opts.DataDir, "shared-local-instance.db")); err != nil {
					t.Errorf("no database file in the data directory: %v", err)
				}
			}
			pid := srv.PID()
			if pid <= 0 {
				t.Fatalf("PID() = %d, want java's pid", pid)
			}
			srv.Stop()
			srv.Stop() // a second Stop is harmless
			if err := syscall.Kill(pid, 0); err == nil {
				t.Errorf("java (pid %d) still runs after Stop", pid)
			}
			select {
			case <-srv.Done():
			default:
				t.Errorf("Done() is not closed after Stop")
			}
		})
	}
}

func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	first, err := dynamolocal.Start(context.Background(), dynamolocal.Options{DataDir: dir})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	createTable(t, first.Client(), "kept")
	_, err = first.Client().PutItem(context.Background(), &dynamodb.PutItemInput{
		TableName: aws.String("kept"),
		Item:      map[string]ddbtypes.AttributeValue{"id": &ddbtypes.AttributeValueMemberS{Value: "a"}},
	})
	if err != nil {
		t.Fatalf("PutItem: %v", err)
	}
	first.Stop()

	second, err := dynamolocal.Start(context.Background(), dynamolocal.Options{DataDir: dir})
	if err != nil {
		t.Fatalf("Start again: %v", err)
	}
	defer second.Stop()
	out, err := second.Client().GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String("kept"),
		Key:       map[string]ddbtypes.AttributeValue{"id": &ddbtypes.AttributeValueMemberS{Value: "a"}},
	})
	if err != nil {
		t.Fatalf("GetItem after restart: %v", err)
	}
	if out.Item == nil {
		t.Errorf("item written before the restart is missing after it")
	}
}

// TestNoOrphanWhenParentDies kills a program that started DynamoDB Local
// with SIGKILL, so it runs no clean-up, and checks that java goes too.
func TestNoOrphanWhenParentDies(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("read helper output: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("helper said %q, want java's pid", line)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("java (pid %d) is not running in the helper: %v", pid, err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if !gone(pid) {
		t.Errorf("java (pid %d) outlived the program that started it", pid)
	}
}

func TestStartErrors(t *testing.T) {
	tests := []struct {
		name string
		opts dynamolocal.Options
		want string
	}{
		{"missing jar", dynamolocal.Options{Jar: "/nonexistent/DynamoDBLocal.jar"}, "find jar"},
		{"missing java", dynamolocal.Options{Java: "no-such-java-binary"}, "make deps"},
		{"not a jar", dynamolocal.Options{Jar: writeFile(t, "DynamoDBLocal.jar", "not a jar"), StartTimeout: 30 * time.Second}, "exited"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := dynamolocal.Start(context.Background(), tt.opts)
			if err == nil {
				srv.Stop()
				t.Fatalf("Start succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindJar(t *testing.T) {
	t.Run("from the repository", func(t *testing.T) {
		jar, err := dynamolocal.FindJar("")
		if err != nil {
			t.Fatalf("FindJar: %v", err)
		}
		if got, want := filepath.Base(jar), "DynamoDBLocal.jar"; got != want {
			t.Errorf("FindJar = %s, want a %s", jar, want)
		}
	})
	t.Run("from the environment", func(t *testing.T) {
		want := writeFile(t, "custom.jar", "x")
		t.Setenv(dynamolocal.JarEnv, want)
		got, err := dynamolocal.FindJar("")
		if err != nil || got != want {
			t.Errorf("FindJar = %q, %v; want %q", got, err, want)
		}
	})
	t.Run("environment names a missing file", func(t *testing.T) {
		t.Setenv(dynamolocal.JarEnv, "/nonexistent.jar")
		if _, err := dynamolocal.FindJar(""); err == nil || !strings.Contains(err.Error(), dynamolocal.JarEnv) {
			t.Errorf("FindJar error = %v, want one naming %s", err, dynamolocal.JarEnv)
		}
	})
	t.Run("outside a repository", func(t *testing.T) {
		if _, err := dynamolocal.FindJar(t.TempDir()); err == nil {
			t.Errorf("FindJar outside a repository succeeded, want an error")
		}
	})
}

// BenchmarkStartStop measures how long `make local` and every test binary
// wait for DynamoDB Local: start until it answers, then stop.
func BenchmarkStartStop(b *testing.B) {
	for b.Loop() {
		srv, err := dynamolocal.Start(context.Background(), dynamolocal.Options{})
		if err != nil {
			b.Fatalf("Start: %v", err)
		}
		srv.Stop()
	}
}
