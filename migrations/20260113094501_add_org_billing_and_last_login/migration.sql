-- AlterTable
ALTER TABLE "organizations" ADD COLUMN     "billing_email" TEXT,
ADD COLUMN     "seat_limit" INTEGER NOT NULL DEFAULT 5;

-- AlterTable
ALTER TABLE "users" ADD COLUMN     "last_login_at" TIMESTAMP(3);
